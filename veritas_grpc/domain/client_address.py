"""The client address of a call: the direct peer, or the address a trusted proxy forwarded.

Sign-in and registration throttles count per client address, so the address must be one
a client cannot choose. The rules:

- The direct peer of the connection (gRPC's `context.peer()`: `ipv4:203.0.113.7:5555`,
  `ipv6:[2001:db8::1]:5555`) is the client, unless it is a trusted proxy
  (VERITAS_TRUSTED_PROXIES; empty by default, so every forwarded header is ignored).
- When the peer is a trusted proxy, the client is the rightmost address of
  x-forwarded-for that is not itself a trusted proxy: every proxy appends the address it
  received the request from, so entries to the right of the first untrusted one were
  written by proxies we trust, and entries to its left by whoever the client is (forged
  freely). A trusted proxy that sends no x-forwarded-for (or only proxies) is taken at its
  word: the leftmost trusted entry, or the proxy itself.
- An entry that is not an address stops the walk: the address of the trusted hop that
  wrote it is used instead, so garbage cannot pick a bucket either.

IPv4-mapped IPv6 addresses (::ffff:192.0.2.1, what a dual-stack socket shows for an IPv4
client) are IPv4 addresses. Throttles count IPv6 clients per /64 (`throttle_key`): one
host is normally given a whole /64, and counting per address would hand it 2^64 buckets.

No gRPC here: the servicer passes the peer string and the header values in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import unquote

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A peer that is no IP address (a Unix socket, an in-process channel): all such callers
# share one bucket, named so that no IP address can collide with it.
UNKNOWN = "unknown"
IPV6_THROTTLE_PREFIX = 64


def parse_trusted_proxies(text: str) -> tuple[IPNetwork, ...]:
    """'10.0.0.1, 10.1.0.0/16, fd00::/8' -> networks; ValueError names a bad entry."""
    networks: list[IPNetwork] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
            mapped = network.network_address.ipv4_mapped
            network = ipaddress.ip_network(f"{mapped}/{max(0, network.prefixlen - 96)}")
        networks.append(network)
    return tuple(networks)


def _plain(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        # Scope ids (fe80::1%eth0) say which interface, not which host.
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it: '192.0.2.1', '192.0.2.1:443', '2001:db8::1',
    '[2001:db8::1]' or '[2001:db8::1]:443'. None when it is none of these."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        text = host
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    try:
        return _plain(ipaddress.ip_address(text))
    except ValueError:
        return None


def peer_address(peer: str) -> IPAddress | None:
    """The address in a gRPC peer string, without its port; None for non-IP peers."""
    kind, sep, rest = peer.partition(":")
    if not sep or kind not in ("ipv4", "ipv6"):
        return None
    # Some gRPC versions percent-encode the brackets of IPv6 peers.
    return parse_address(unquote(rest))


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def forwarded_hops(values: Iterable[str]) -> list[str]:
    """The entries of every x-forwarded-for value, in order (several headers append)."""
    return [hop.strip() for value in values for hop in value.split(",") if hop.strip()]


def client_address(
    peer: str, forwarded_for: Iterable[str], trusted: Sequence[IPNetwork] = ()
) -> str:
    """The client's address as text (see the module's rules); UNKNOWN for non-IP peers."""
    direct = peer_address(peer)
    if direct is None:
        return UNKNOWN
    if not trusted or not _trusted(direct, trusted):
        return str(direct)
    client = direct
    for hop in reversed(forwarded_hops(forwarded_for)):
        address = parse_address(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)


def throttle_key(address: str) -> str:
    """What throttles count by: an IPv4 address, or the /64 of an IPv6 address."""
    parsed = parse_address(address)
    if parsed is None:
        return UNKNOWN if not address else address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_THROTTLE_PREFIX}", strict=False))
    return str(parsed)
