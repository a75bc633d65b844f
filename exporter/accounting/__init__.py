"""Exact counters from windowed totals.

Owns the per-target ledgers, their persisted state, window slices, the snapshot handed to the
metrics, and the spend derived from counted tokens. Must never import api, polling, web or metrics.
"""
