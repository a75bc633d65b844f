"""Benchmarks: run with ``scripts/bench``; results go to BENCHMARKS.md."""
