"""What /metrics says: metric families, exposition rendering and its cache, self-metrics.

Renders accounting's snapshots. Must never reach the API: no api, polling or web imports.
"""
