"""The HTTP front: server, request parsing and limits, the web config (TLS, basic auth), reloads.

Serves what metrics renders. Must never reach the API: no api or polling imports.
"""
