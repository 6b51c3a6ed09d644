"""The one policy for addresses a workspace member can aim: webhooks, Slack and Teams URLs,
data sources (and later connectors).

Members are not trusted, so what they aim may never reach link-local or cloud-metadata
addresses, the unspecified address, multicast or reserved ranges; loopback, private
ranges (RFC 1918, CGNAT, unique-local IPv6, anything not globally routable) and unix
sockets only when the operator sets ``SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true``.

A host name is checked after DNS resolution, every address it resolves to, and the caller
then connects to the address that was checked (`connect`, or `resolve` to pin it, e.g. as
libpq's `hostaddr`), so a second lookup cannot hand out a different answer. IPv4-mapped,
NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address inside them.

Messages name the reason and the host as the member gave it; a name's resolved addresses
go to the server log only (they describe the operator's network).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

if TYPE_CHECKING:
    from connectors.settings import Settings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_PRIVATE_HINT = "set SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true to allow it"

# Names of cloud metadata services, refused before any lookup (a resolver may map them
# anywhere).
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # Linux connects 0.0.0.0 to itself
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(ValueError):
    """The policy refuses this target. The message says why (and how to allow it, if the
    operator can)."""


class OutboundUnreachable(OSError):
    """The host name does not resolve (or a connection to its addresses failed)."""


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, NAT64 or 6to4 IPv6 address; else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def _refusal(address: IPAddress) -> tuple[str, bool] | None:
    """(what the address is, whether allow_private lets it through), or None if public."""
    if address.is_unspecified or (
        isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK
    ):
        return "an unspecified address", False
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address", False
    if address.is_link_local:
        return "a link-local address", False
    if address.is_multicast:
        return "a multicast address", False
    if address.is_loopback:
        return "a loopback address", True
    if address.is_private and not address.is_reserved:
        return "a private address", True
    if address.is_reserved:  # includes 240/4, the broadcast address and ::/8
        return "a reserved address", False
    if not address.is_global:  # CGNAT 100.64/10, documentation and benchmark ranges
        return "a non-public address", True
    return None


@dataclass(frozen=True)
class OutboundPolicy:
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(allow_private=settings.outbound_allow_private)

    # -- addresses ---------------------------------------------------------------------

    def why_refused(self, address: IPAddress | str) -> str | None:
        """What `address` is, if the policy refuses it ("a private address; set …")."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        refusal = _refusal(embedded_ipv4(ip))
        if refusal is None:
            return None
        reason, private = refusal
        if not private:
            return reason
        return None if self.allow_private else f"{reason}; {ALLOW_PRIVATE_HINT}"

    def check_address(self, address: str) -> IPAddress:
        """`address` (an IP literal) if allowed; raises OutboundRefused naming it."""
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
        if reason := self.why_refused(ip):
            raise OutboundRefused(f"address {ip} is {reason}")
        return ip

    # -- hosts -------------------------------------------------------------------------

    def check_host_name(self, host: str) -> None:
        """Refuses metadata service names before any lookup."""
        name = host.strip().rstrip(".").lower()
        if not name:
            raise OutboundRefused("no host given")
        if name in METADATA_HOSTS:
            raise OutboundRefused(f"host {host} is a cloud metadata service")

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to (all of them allowed), in resolver order.

        Raises OutboundRefused when any address is refused (a name with one bad address
        is refused whole: the resolver may hand out that one next time), and
        OutboundUnreachable when the name does not resolve."""
        self.check_host_name(host)
        literal = _ip_literal(host)
        if literal is not None:
            return [str(self.check_address(literal))]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as err:
            log.info("outbound: cannot resolve %s: %s", host, err)
            raise OutboundUnreachable(f"cannot resolve {host}") from None
        addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
        for address in addresses:
            if reason := self.why_refused(address):
                log.info("outbound: %s resolves to %s, %s", host, address, reason)
                raise OutboundRefused(f"host {host} resolves to {reason}")
        if not addresses:
            raise OutboundUnreachable(f"cannot resolve {host}")
        return addresses

    def check_unix_socket(self, path: str) -> None:
        if not self.allow_private:
            raise OutboundRefused(f"unix sockets are local to this machine; {ALLOW_PRIVATE_HINT}")

    # -- connecting --------------------------------------------------------------------

    def connect(
        self,
        host: str,
        port: int,
        timeout: float | None,
        *,
        source_address: tuple[str, int] | None = None,
    ) -> socket.socket:
        """A TCP connection to `host`:`port`, made to an address this policy checked."""
        last: OSError | None = None
        for address in self.resolve(host, port):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                if source_address is not None:
                    sock.bind(source_address)
                sock.connect((address, port))
            except OSError as err:
                sock.close()
                last = err
                continue
            peer = sock.getpeername()[0]
            if reason := self.why_refused(peer):  # belt and braces: what we reached
                sock.close()
                raise OutboundRefused(f"address {peer} is {reason}")
            return sock
        assert last is not None
        raise last


def _ip_literal(host: str) -> str | None:
    candidate = host.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    candidate = candidate.split("%", 1)[0]
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return None
    return candidate


def same_socket_dir(a: str, b: str) -> bool:
    """Whether two unix-socket directories are the same place (by realpath, or by the
    directory's identity when both exist)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


__all__ = [
    "ALLOW_PRIVATE_HINT",
    "METADATA_ADDRESSES",
    "METADATA_HOSTS",
    "OutboundPolicy",
    "OutboundRefused",
    "OutboundUnreachable",
    "embedded_ipv4",
    "same_socket_dir",
]


# --- HTTP through the policy (channels, connectors' token endpoints) ---------------------


class _PolicyBackend(httpcore.NetworkBackend):
    """httpcore's sockets, opened only to addresses the outbound policy checked."""

    def __init__(self, policy: OutboundPolicy):
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self._policy.resolve(host, port):
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                failure = err
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise OutboundRefused("unix sockets are not reachable this way")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PolicyTransport(httpx.HTTPTransport):
    """httpx's transport with the policy's network backend; no proxy from the environment
    (a proxy would resolve the name itself, where the policy cannot look)."""

    def __init__(self, policy: OutboundPolicy):
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_PolicyBackend(policy),
            max_connections=4,
        )
