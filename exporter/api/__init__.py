"""The upstream cloud API, and nothing but it.

Owns request signing, HTTP transport, answer parsing, RetCodes, the rate limit, the API's clock
and time buckets, and the key and model listings. Must never import accounting, cost, polling,
web or metrics.
"""
