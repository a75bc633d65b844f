"""The exporter's vocabulary and plumbing, with no concern of its own.

Owns usage totals, failure reasons, clocks, durations, bounded file and JSON reading, atomic
writes, decimal amounts and log setup. Must never import anything else from ``exporter``.
"""
