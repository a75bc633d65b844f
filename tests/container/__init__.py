"""Helpers that build and run the exporter image with buildah and podman (tests only)."""
