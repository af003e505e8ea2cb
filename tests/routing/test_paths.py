"""Host and path normalisation used by the lookup."""

from __future__ import annotations

import pytest

from pyingress.routing.paths import normalize_host, normalize_path, split_segments


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com:8443", "example.com"),
        ("example.com.", "example.com"),
        ("example.com.:80", "example.com"),
        ("[2001:DB8::1]:443", "[2001:db8::1]"),
        ("", ""),
    ],
)
def test_normalize_host(raw: str, expected: str) -> None:
    assert normalize_host(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/plain/path", "/plain/path"),
        ("/%61dmin", "/admin"),
        ("/x/../admin", "/admin"),
        ("/x/./y", "/x/y"),
        ("//admin//panel/", "/admin/panel/"),
        ("/../../etc", "/etc"),
        ("/a%20b", "/a b"),
        ("/a/..", "/"),
    ],
)
def test_normalize_path_defeats_encoding_tricks(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


def test_split_segments_ignores_one_trailing_slash() -> None:
    assert split_segments("/") == []
    assert split_segments("/foo/") == ["foo"]
    assert split_segments("/foo/bar") == ["foo", "bar"]
