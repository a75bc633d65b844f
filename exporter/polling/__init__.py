"""When and what to read: the poll loop, its workers, key discovery, sharding, supervision.

Drives api and accounting. Must never import web or metrics (the service wires them together).
"""
