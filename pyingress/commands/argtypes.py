"""Value types for command-line flags, shared by every sub-command.

Each is an ``argparse`` ``type=``: it returns the parsed value or raises
``ArgumentTypeError`` with a message that names the bad value and what was expected, which
argparse prints as ``argument --flag: <message>``. Standard library only, so any command can
import it without loading the Kubernetes client or the data plane.
"""

from __future__ import annotations

import argparse
import ipaddress

MAX_SECONDS = 3600.0
"""No timing flag makes sense beyond an hour; a larger value is almost surely a typo."""


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (worker counts and the like)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _number_of_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def seconds(text: str) -> float:
    """A duration from 0 to an hour; 0 is allowed (it often means "off" or "at once")."""
    value = _number_of_seconds(text)
    if not 0 <= value <= MAX_SECONDS:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and {MAX_SECONDS:g} seconds")
    return value


def positive_seconds(text: str) -> float:
    """A duration above 0 and at most an hour (periods, timeouts)."""
    value = _number_of_seconds(text)
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text} must be above 0 and at most {MAX_SECONDS:g} seconds"
        )
    return value


def ipv4(text: str) -> ipaddress.IPv4Address:
    """One IPv4 address, dotted quad."""
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def namespaced_name(text: str) -> str:
    """``NAMESPACE/NAME`` of an object, both parts present."""
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return text
