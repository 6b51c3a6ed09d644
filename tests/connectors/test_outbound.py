"""The outbound-address policy: table-driven over addresses, real resolution and a real
listener for `connect`."""

from __future__ import annotations

import socket

import pytest

from connectors.outbound import OutboundPolicy, OutboundRefused, OutboundUnreachable

STRICT = OutboundPolicy(allow_private=False)
OPEN = OutboundPolicy(allow_private=True)

ALWAYS_REFUSED = [
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:0.0.0.0", "unspecified"),
]

PRIVATE = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.5", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("100.64.0.1", "non-public"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.5", "private"),
    ("64:ff9b::a00:5", "private"),  # NAT64 of 10.0.0.5
    ("2002:a00:5::1", "private"),  # 6to4 of 10.0.0.5
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1", "100.128.0.1"]


@pytest.mark.parametrize("address, words", ALWAYS_REFUSED)
def test_always_refused_even_when_private_is_allowed(address: str, words: str) -> None:
    for policy in (STRICT, OPEN):
        with pytest.raises(OutboundRefused, match=words):
            policy.check_address(address)


@pytest.mark.parametrize("address, words", PRIVATE)
def test_private_needs_the_operator(address: str, words: str) -> None:
    with pytest.raises(OutboundRefused) as err:
        STRICT.check_address(address)
    assert words in str(err.value)
    assert "SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true" in str(err.value)
    OPEN.check_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    STRICT.check_address(address)


def test_the_message_names_the_address() -> None:
    with pytest.raises(OutboundRefused) as err:
        STRICT.check_address("10.0.0.5")
    assert str(err.value) == (
        "address 10.0.0.5 is a private address; set SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true to allow it"
    )


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.google.internal."])
def test_metadata_names_are_refused_before_any_lookup(host: str) -> None:
    with pytest.raises(OutboundRefused, match="metadata"):
        OPEN.resolve(host, 80)


def test_names_are_judged_after_resolution() -> None:
    with pytest.raises(OutboundRefused) as err:
        STRICT.resolve("localhost", 80)
    assert "host localhost resolves to a loopback address" in str(err.value)
    assert set(OPEN.resolve("localhost", 80)) <= {"127.0.0.1", "::1"}
    assert OPEN.resolve("[::1]", 80) == ["::1"]


def test_an_unknown_name_is_unreachable() -> None:
    with pytest.raises(OutboundUnreachable):
        OPEN.resolve("no-such-host.invalid", 80)


def test_unix_sockets_need_the_operator() -> None:
    with pytest.raises(OutboundRefused, match="unix sockets"):
        STRICT.check_unix_socket("/tmp")
    OPEN.check_unix_socket("/tmp")


def test_connect_reaches_the_checked_address() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with pytest.raises(OutboundRefused):
            STRICT.connect("localhost", port, 2)
        with OPEN.connect("127.0.0.1", port, 2) as sock:
            assert sock.getpeername() == ("127.0.0.1", port)
