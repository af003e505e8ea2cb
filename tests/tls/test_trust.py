"""Forwarded headers are believed only from trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from pyingress.tls.trust import (
    CLOUDFLARE_RANGES,
    TrustedProxies,
    client_address,
    client_info,
    forwarded_values,
)

TRUSTED = TrustedProxies.parse("10.0.0.0/8, 192.168.1.1")


def test_untrusted_peer_headers_are_ignored() -> None:
    headers = {
        b"x-forwarded-for": b"1.2.3.4",
        b"cf-connecting-ip": b"5.6.7.8",
        b"x-forwarded-proto": b"https",
    }
    info = client_info("203.0.113.9", "http", headers, TRUSTED)
    assert (info.address, info.proto, info.forwarded_for) == ("203.0.113.9", "http", "203.0.113.9")


def test_no_trusted_proxies_trusts_nobody() -> None:
    headers = {b"x-forwarded-for": b"1.2.3.4"}
    assert client_address("10.1.1.1", headers, TrustedProxies()) == "10.1.1.1"


def test_rightmost_untrusted_hop_is_the_client() -> None:
    headers = {b"x-forwarded-for": b"6.6.6.6, 1.2.3.4, 10.9.9.9", b"x-forwarded-proto": b"https"}
    info = client_info("10.0.0.2", "http", headers, TRUSTED)
    # 6.6.6.6 was written by the client itself: only hops added by trusted proxies count.
    assert info.address == "1.2.3.4"
    assert info.proto == "https"
    assert info.forwarded_for == "6.6.6.6, 1.2.3.4, 10.9.9.9, 10.0.0.2"


def test_all_hops_trusted_gives_leftmost() -> None:
    headers = {b"x-forwarded-for": b"10.5.5.5, 192.168.1.1"}
    assert client_address("10.0.0.2", headers, TRUSTED) == "10.5.5.5"


def test_garbage_hop_stops_the_walk() -> None:
    headers = {b"x-forwarded-for": b"1.1.1.1, not-an-ip, 10.3.3.3"}
    assert client_address("10.0.0.2", headers, TRUSTED) == "10.3.3.3"


def test_cf_connecting_ip_from_cloudflare_peer() -> None:
    cloudflare = TrustedProxies.parse("cloudflare")
    headers = {b"cf-connecting-ip": b"2001:db8::7", b"x-forwarded-for": b"9.9.9.9"}
    assert client_address("173.245.48.10", headers, cloudflare) == "2001:db8::7"
    assert client_address("2606:4700::1", headers, cloudflare) == "2001:db8::7"
    assert client_address("198.51.100.1", headers, cloudflare) == "198.51.100.1"
    bad = {b"cf-connecting-ip": b"nonsense", b"x-forwarded-for": b"9.9.9.9"}
    assert client_address("173.245.48.10", bad, cloudflare) == "9.9.9.9"


def test_bad_forwarded_proto_is_replaced() -> None:
    info = client_info("10.0.0.2", "https", {b"x-forwarded-proto": b"javascript"}, TRUSTED)
    assert info.proto == "https"


def test_parse_errors_name_the_entry() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        TrustedProxies.parse("10.0.0.0/8,nope")


def test_cloudflare_preset_is_well_formed() -> None:
    networks = [ipaddress.ip_network(cidr) for cidr in CLOUDFLARE_RANGES]
    assert sum(net.version == 4 for net in networks) == 15
    assert sum(net.version == 6 for net in networks) == 7


def test_forwarded_values_for_the_proxy_hot_path() -> None:
    headers = [
        (b"x-forwarded-for", b"X-Forwarded-For", b"6.6.6.6"),
        (b"x-forwarded-for", b"X-Forwarded-For", b"1.2.3.4"),
        (b"x-forwarded-proto", b"X-Forwarded-Proto", b"https"),
    ]
    assert forwarded_values(b"10.0.0.2", b"http", headers, TRUSTED) == (
        b"1.2.3.4",
        b"6.6.6.6, 1.2.3.4, 10.0.0.2",
        b"https",
    )
    assert forwarded_values(b"8.8.8.8", b"http", headers, TRUSTED) == (
        b"8.8.8.8",
        b"8.8.8.8",
        b"http",
    )
