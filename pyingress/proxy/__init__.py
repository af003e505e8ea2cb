"""The data plane: an HTTP/1.1 reverse proxy written at the asyncio protocol level."""

from pyingress.proxy.asgi import ASGIApp
from pyingress.proxy.metrics import ProxyMetrics
from pyingress.proxy.server import ProxyConfig, ProxyServer

__all__ = ["ASGIApp", "ProxyConfig", "ProxyMetrics", "ProxyServer"]
