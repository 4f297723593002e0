"""The SSRF allow rule, decided per address without connecting, and the resolver deadline."""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

import pytest

from iconosearch.net_guard import AddressNotAllowedError, is_public_address, resolve_public

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "224.0.0.1",  # multicast: 0.1 let it through although its docstring said otherwise
    "239.255.255.250",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "2001:db8::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "fec0::1",  # deprecated site-local
    "::127.0.0.1",  # deprecated IPv4-compatible form of loopback
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::7f00:1",  # NAT64 to 169.254.169.254 / 127.0.0.1
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 prefix
    "2002:a9fe:a9fe::1",
    "2002:7f00:1::1",
    "2002:0a00:0001::1",  # 6to4 of link-local, loopback, private
]
ALLOWED = [
    "8.8.8.8",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",  # embedded forms of a public address
]


@pytest.mark.parametrize("addr", REFUSED)
def test_non_global_forms_are_refused(addr: str) -> None:
    assert not is_public_address(ipaddress.ip_address(addr))


@pytest.mark.parametrize("addr", ALLOWED)
def test_global_unicast_is_allowed(addr: str) -> None:
    assert is_public_address(ipaddress.ip_address(addr))


def test_every_resolved_address_must_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in ("8.8.8.8", "10.0.0.1")]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(AddressNotAllowedError, match="non-public"):
        resolve_public("mixed.example", 80, timeout_s=1.0)


def test_a_hung_resolver_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(host: str, port: int, **_: Any) -> list[Any]:
        time.sleep(3)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port))]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    t0 = time.monotonic()
    with pytest.raises(AddressNotAllowedError, match="took more than"):
        resolve_public("slow.example", 80, timeout_s=0.2)
    # Generous: the point is "not the 3 s the resolver takes", not a precise deadline.
    assert time.monotonic() - t0 < 2.0
