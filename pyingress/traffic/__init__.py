"""Traffic policies from ingress-nginx annotations: limits, CORS, redirects, rewrites, headers,
and the upstream choices (canary, affinity, hashing, EWMA, body size, retries).

``import pyingress.traffic.filters`` registers the request filters; the data plane reads the
upstream choices from :class:`~pyingress.traffic.policy.TrafficPolicy` through
:mod:`pyingress.traffic.upstream`.
"""
