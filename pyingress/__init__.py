"""pyingress: a pure-Python Kubernetes ingress controller with a built-in IP announcer."""

__version__ = "0.1.0"
