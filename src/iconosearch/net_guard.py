"""Which network addresses a client-supplied URL may reach (SSRF guard), decided without connecting.

The rule is an explicit allow list, not a deny list: only *global unicast* addresses pass. For IPv6
that is 2000::/3 minus the special ranges Python knows (Teredo, documentation, ORCHID, …). Forms
that embed an IPv4 address — IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d`` and 6to4
``2002:AABB:CCDD::`` — are judged by the IPv4 address they route to, because each of them can reach
169.254.169.254 or 127.0.0.1 on a host with the matching translator. The deprecated IPv4-compatible
``::a.b.c.d`` and site-local ``fec0::/10`` forms are outside 2000::/3 and so refused.

Host name lookups run with a deadline: ``getaddrinfo`` has no timeout of its own, and a slow
resolver would otherwise hold a worker thread for as long as the system resolver likes.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")

# A small pool of its own: a hung resolver then blocks only lookups, never the server's other work.
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


class AddressNotAllowedError(Exception):
    """A host that cannot be resolved in time, or that resolves to a non-public address."""


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for global unicast addresses (see the module docstring for the embedded forms)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    if ip.ipv4_mapped is not None:
        return _public_v4(ip.ipv4_mapped)
    if ip in _NAT64_WELL_KNOWN:
        return _public_v4(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip not in _GLOBAL_UNICAST_V6:
        return False
    if ip.sixtofour is not None:
        return _public_v4(ip.sixtofour)
    return ip.is_global and ip.teredo is None


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as ``getaddrinfo`` prints it (an IPv6 zone suffix like ``%eth0`` is dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def resolve_public(host: str, port: int, *, timeout_s: float, allow_private: bool = False) -> str:
    """The first address of ``host`` if every address it resolves to is public; else an error.

    Every address must pass, not just the first: the HTTP client may try them in any order.
    ``allow_private`` exists for tests against a local server only.
    """
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError as exc:
        future.cancel()
        raise AddressNotAllowedError(f"looking up host {host!r} took more than {timeout_s:g}s") from exc
    except (OSError, UnicodeError) as exc:
        raise AddressNotAllowedError(f"cannot resolve host {host!r}") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise AddressNotAllowedError(f"host {host!r} has no address")
    for addr in addresses:
        ip = parse_address(addr)
        if not allow_private and not is_public_address(ip):
            raise AddressNotAllowedError(f"host {host!r} resolves to a non-public address ({ip}); refused")
    return addresses[0]
