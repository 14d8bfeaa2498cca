"""domain.client_address: the client address of a call from its peer and forwarded headers."""

import ipaddress

import pytest

from veritas_grpc.domain.client_address import (
    UNKNOWN,
    client_address,
    parse_trusted_proxies,
    peer_address,
    throttle_key,
)

ENVOY = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:5555", "127.0.0.1"),
        ("ipv6:[::1]:5555", "::1"),
        ("ipv6:%5B2001:db8::7%5D:443", "2001:db8::7"),
        ("ipv6:[::ffff:192.0.2.1]:80", "192.0.2.1"),  # a dual-stack socket's IPv4 client
        ("ipv6:[fe80::1%25eth0]:80", "fe80::1"),
    ],
)
def test_the_peer_without_its_port(peer, address):
    assert str(peer_address(peer)) == address


@pytest.mark.parametrize("peer", ["unix:/tmp/veritas.sock", "", "ipv4:nonsense:1", "local:x"])
def test_peers_that_are_no_ip_address(peer):
    assert peer_address(peer) is None
    assert client_address(peer, ["203.0.113.9"], ENVOY) == UNKNOWN


def test_forwarded_headers_are_ignored_without_trusted_proxies():
    assert client_address("ipv4:198.51.100.7:5555", ["203.0.113.9"]) == "198.51.100.7"


def test_forwarded_headers_from_an_untrusted_peer_are_ignored():
    assert client_address("ipv4:198.51.100.7:5555", ["203.0.113.9"], ENVOY) == "198.51.100.7"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client():
    # The browser forged 1.2.3.4; Envoy appended the address it really came from.
    forwarded = ["1.2.3.4, 203.0.113.9"]
    assert client_address("ipv4:127.0.0.1:40000", forwarded, ENVOY) == "203.0.113.9"


def test_trusted_hops_are_skipped_and_several_headers_append():
    forwarded = ["1.2.3.4, 203.0.113.9", "10.1.2.3"]
    assert client_address("ipv4:10.0.0.5:40000", forwarded, ENVOY) == "203.0.113.9"
    ipv6 = ["2001:db8::5", "fd00::1"]
    assert client_address("ipv6:[fd00::2]:40000", ipv6, ENVOY) == "2001:db8::5"


def test_a_trusted_proxy_without_a_header_is_the_client():
    assert client_address("ipv4:127.0.0.1:40000", [], ENVOY) == "127.0.0.1"
    assert client_address("ipv4:127.0.0.1:40000", ["10.0.0.9"], ENVOY) == "10.0.0.9"


def test_garbage_in_the_header_stops_at_the_hop_that_wrote_it():
    assert client_address("ipv4:127.0.0.1:1", ["203.0.113.9, junk"], ENVOY) == "127.0.0.1"
    assert client_address("ipv4:127.0.0.1:1", ["junk, 10.0.0.7"], ENVOY) == "10.0.0.7"


@pytest.mark.parametrize(
    ("hop", "address"),
    [("203.0.113.9:1234", "203.0.113.9"), ("[2001:db8::1]:443", "2001:db8::1")],
)
def test_hops_with_ports(hop, address):
    assert client_address("ipv4:127.0.0.1:1", [hop], ENVOY) == address


def test_trusted_proxies_are_parsed_and_checked():
    assert parse_trusted_proxies("") == ()
    assert parse_trusted_proxies(" 10.0.0.1 ,, 10.2.0.0/16 ") == (
        ipaddress.ip_network("10.0.0.1/32"),
        ipaddress.ip_network("10.2.0.0/16"),
    )
    assert parse_trusted_proxies("::ffff:10.0.0.0/104") == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(ValueError, match="'envoy'"):
        parse_trusted_proxies("10.0.0.1, envoy")


def test_throttles_count_ipv4_per_address_and_ipv6_per_64():
    assert throttle_key("203.0.113.9") == "203.0.113.9"
    assert throttle_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert throttle_key("2001:db8:1:2::9") == throttle_key("2001:db8:1:2:ffff::1")
    assert throttle_key(UNKNOWN) == UNKNOWN
