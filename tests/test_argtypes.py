"""The shared command-line value types: what they accept, and the message for what they refuse."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable

import pytest

from pyingress.commands import argtypes


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (argtypes.port, "1", 1),
        (argtypes.port, "65535", 65535),
        (argtypes.positive_int, "3", 3),
        (argtypes.seconds, "0", 0.0),
        (argtypes.seconds, "3600", 3600.0),
        (argtypes.positive_seconds, "0.1", 0.1),
        (argtypes.ipv4, "10.0.0.1", ipaddress.IPv4Address("10.0.0.1")),
        (argtypes.namespaced_name, "ns/name", "ns/name"),
    ],
)
def test_accepts(kind: Callable[[str], object], text: str, value: object) -> None:
    assert kind(text) == value


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        (argtypes.port, "http", "'http' is not a port number"),
        (argtypes.port, "0", "0 is not a port number (1-65535)"),
        (argtypes.port, "70000", "70000 is not a port number (1-65535)"),
        (argtypes.positive_int, "1.5", "'1.5' is not a whole number"),
        (argtypes.positive_int, "0", "0 must be at least 1"),
        (argtypes.seconds, "soon", "'soon' is not a number of seconds"),
        (argtypes.seconds, "-1", "-1 must be between 0 and 3600 seconds"),
        (argtypes.seconds, "nan", "nan must be between 0 and 3600 seconds"),
        (argtypes.positive_seconds, "0", "0 must be above 0 and at most 3600 seconds"),
        (argtypes.positive_seconds, "inf", "inf must be above 0 and at most 3600 seconds"),
        (argtypes.ipv4, "10.0.0", "'10.0.0' is not an IPv4 address"),
        (argtypes.namespaced_name, "name", "'name' is not NAMESPACE/NAME"),
        (argtypes.namespaced_name, "a/b/c", "'a/b/c' is not NAMESPACE/NAME"),
    ],
)
def test_refuses_with_a_clear_message(
    kind: Callable[[str], object], text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        kind(text)
    assert str(caught.value) == message
