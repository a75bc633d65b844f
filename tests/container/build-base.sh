#!/usr/bin/env bash
# Build a local stand-in for the Dockerfile's FROM image (no image registry is reachable here):
# Debian bookworm from debootstrap with python3, pip and venv, laid out like the official
# python image (python/python3/pip in /usr/local/bin, pip not "externally managed"), and tagged
# with the base image's exact name so the UNMODIFIED Dockerfile builds against it.
#
# The host's CA bundle and pip configuration are copied in at run time, so pip works in build
# steps exactly as on this machine; nothing about any registry is written into the repository.
# Local file:// indexes and find-links directories are dropped from the copy (they are not
# reachable inside a build); everything else in the configuration is kept.
#
# Usage: tests/container/build-base.sh IMAGE_NAME
# Env:   CONTAINERS_ROOT (storage root shared with the tests; vfs driver), DEBIAN_MIRROR (optional).
# Idempotent: an image carrying the same cache key (script + CA bundle + pip config) is reused.
set -euo pipefail
image=${1:?usage: build-base.sh IMAGE_NAME (e.g. python:3.11-slim-bookworm)}
root=${CONTAINERS_ROOT:?set CONTAINERS_ROOT to the container storage directory}
storage=(--root "$root/storage" --runroot "$root/run" --storage-driver vfs)
here=$(cd "$(dirname "$0")" && pwd)
ca=/etc/ssl/certs/ca-certificates.crt

for tool in buildah debootstrap python3; do
  command -v "$tool" >/dev/null || { echo "build-base.sh: $tool is not installed" >&2; exit 1; }
done

# The merged pip configuration as pip itself sees it (files and PIP_* environment).
pip_config() { python3 -m pip config list 2>/dev/null || true; }

key=$( { cat "$0"; [ -f "$ca" ] && cat "$ca"; pip_config; echo "$image"; } | sha256sum | cut -c1-16)
if [ "$(buildah "${storage[@]}" images --noheading --format '{{.Name}}:{{.Tag}}' \
        --filter "label=org.uminfer.standin.key=$key" 2>/dev/null | head -1)" != "" ]; then
  echo "build-base.sh: reusing cached $image (key $key)"
  exit 0
fi

# Debian's own mirror, read from this host's apt sources (deb822 or one-line format).
mirror=${DEBIAN_MIRROR:-$(python3 "$here/apt_mirror.py")}
[ -n "$mirror" ] || { echo "build-base.sh: no Debian mirror in the apt sources; set DEBIAN_MIRROR" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
echo "build-base.sh: debootstrap bookworm (python3, pip, venv) ..."
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# Shape it like the official image: tools in /usr/local/bin and a pip that installs system-wide.
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
printf '#!/bin/sh\nexec /usr/bin/python3 -m pip "$@"\n' >"$rootfs/usr/local/bin/pip"
chmod 0755 "$rootfs/usr/local/bin/pip"
ln -sf pip "$rootfs/usr/local/bin/pip3"
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*

# The host's CA bundle and pip configuration, copied in now (never stored in the repository).
[ -f "$ca" ] && install -D -m 0644 "$ca" "$rootfs$ca"
python3 "$here/pip_config_copy.py" "$rootfs"

ctr=$(buildah "${storage[@]}" from scratch)
tar -C "$rootfs" --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -cf "$work/rootfs.tar" .
buildah "${storage[@]}" add "$ctr" "$work/rootfs.tar" / >/dev/null
pyver=$(chroot "$rootfs" /usr/bin/python3 -c 'import platform; print(platform.python_version())')
buildah "${storage[@]}" config \
  --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --env PYTHON_VERSION="$pyver" --cmd python3 \
  --label org.uminfer.standin.key="$key" --label org.uminfer.standin.for="$image" "$ctr"
buildah "${storage[@]}" commit --rm -q "$ctr" "$image" >/dev/null
echo "build-base.sh: built stand-in $image (python $pyver, key $key)"
