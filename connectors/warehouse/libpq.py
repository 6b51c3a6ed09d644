"""libpq connection strings as libpq reads them: which keys a member may use, which
servers a string reaches (host/hostaddr/port lists expanded the way libpq does), and the
same string pinned to addresses the outbound policy checked.

libpq parses the string itself (`conninfo_to_dict`, URL or key=value form, `?host=`
query parameters included); what it parsed is judged here, never the text.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any

import psutil
from psycopg import conninfo

from connectors.outbound import (
    OutboundPolicy,
    OutboundRefused,
    OutboundUnreachable,
    embedded_ipv4,
    same_socket_dir,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 5432

# Keys that only change how a connection to the named server behaves. Everything else
# (service, servicefile, passfile, sslkey, sslcert, sslrootcert, sslcrl, sslcrldir,
# sslpassword, sslkeylogfile, krbsrvname, gsslib, gssdelegation, requirepeer, options,
# replication …) reads files or ambient credentials of the sqlbook server, or changes
# the server session in ways sqlbook does not expect.
ALLOWED_KEYS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "connect_timeout",
        "client_encoding",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslmode",
        "sslnegotiation",
        "sslcompression",
        "sslsni",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "sslrootcert",  # only "system" (the system's CA store), checked below
        "channel_binding",
        "require_auth",
        "gssencmode",
        "target_session_attrs",
        "load_balance_hosts",
    }
)

_PORT = re.compile(r"\s*\+?(\d{1,10})\s*")


class ConninfoInvalid(ValueError):
    """The string cannot be used. `field` is the request field to name (`url`, `port`)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class Endpoint:
    """One server a connection string may reach: a TCP host (name or address) or a
    unix-socket directory, with `hostaddr` when given (libpq connects there)."""

    host: str
    hostaddr: str
    port: int

    @property
    def unix_socket(self) -> bool:
        return not self.hostaddr and self.host.startswith(("/", "@"))

    def where(self) -> str:
        return f"{self.host or self.hostaddr}:{self.port}"


def parse(url: str) -> dict[str, Any]:
    """libpq's reading of `url`; the error never repeats it (it holds the password)."""
    try:
        return conninfo.conninfo_to_dict(url)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        log.info("a data-source URL did not parse (%s)", type(err).__name__)
        option = re.fullmatch(r'invalid (?:connection option|URI query parameter):? "(\w+)"', first)
        if option:
            raise ConninfoInvalid("url", f"unknown option {option.group(1)!r}") from None
        raise ConninfoInvalid(
            "url",
            "not a PostgreSQL connection URL (postgresql://user:password@host:port/database "
            "or key=value pairs)",
        ) from None


def check_keys(params: dict[str, Any]) -> None:
    refused = sorted(key for key in params if key not in ALLOWED_KEYS)
    if refused:
        names = ", ".join(repr(k) for k in refused)
        raise ConninfoInvalid(
            "url",
            f"option{'s' if len(refused) > 1 else ''} {names} not allowed (they read files "
            "or credentials of the sqlbook server, or change the session)",
        )
    if "sslrootcert" in params and str(params["sslrootcert"]) != "system":
        raise ConninfoInvalid("url", "sslrootcert may only be 'system' (the system's CAs)")


def _split(value: Any) -> list[str]:
    return [] if value is None or str(value) == "" else str(value).split(",")


def _port(raw: str) -> int:
    if raw.strip() == "":
        return DEFAULT_PORT
    m = _PORT.fullmatch(raw)
    number = int(m.group(1)) if m else -1
    if not 1 <= number <= 65535:
        shown = raw.strip()[:20]
        raise ConninfoInvalid("port", f"{shown!r} is not a port number (1-65535)")
    return number


def endpoints(params: dict[str, Any]) -> list[Endpoint]:
    """Every (host, hostaddr, port) libpq would try, in order, as libpq pairs the lists:
    hostaddr entries with host entries one to one, one port for all or one per host;
    empty entries are the defaults."""
    hosts, addrs, ports = _split(params.get("host")), _split(params.get("hostaddr")), None
    ports = _split(params.get("port"))
    if hosts and addrs and len(hosts) != len(addrs):
        raise ConninfoInvalid("url", f"{len(hosts)} host names but {len(addrs)} hostaddr values")
    count = max(len(hosts), len(addrs), 1)
    if len(ports) > 1 and len(ports) != count:
        raise ConninfoInvalid("port", f"{len(ports)} ports for {count} hosts")
    numbers = [_port(p) for p in ports] or [DEFAULT_PORT]
    out = []
    for i in range(count):
        host = hosts[i].strip() if i < len(hosts) else ""
        addr = addrs[i].strip() if i < len(addrs) else ""
        out.append(Endpoint(host, addr, numbers[i] if len(numbers) > 1 else numbers[0]))
    return out


def where(url: str) -> str:
    """ "host:port[, host:port …]" of a connection string, for messages; "" if unparsable."""
    try:
        found = endpoints(conninfo.conninfo_to_dict(url))
    except Exception:
        return ""
    return ", ".join(dict.fromkeys(e.where() for e in found))


# --- where a connection goes -------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """Where one endpoint connects: TCP addresses, or a socket directory."""

    endpoint: Endpoint
    addresses: tuple[str, ...] = ()
    socket_dir: str | None = None


def reach(endpoint: Endpoint, policy: OutboundPolicy) -> Reach:
    """What `endpoint` connects to, checked by `policy`. Raises ConninfoInvalid (no host),
    OutboundRefused, or OutboundUnreachable (a name that does not resolve)."""
    if endpoint.hostaddr:
        try:
            address = policy.check_address(endpoint.hostaddr)
        except ValueError as err:
            if isinstance(err, OutboundRefused):
                raise
            raise ConninfoInvalid("url", "hostaddr must be an IP address") from None
        return Reach(endpoint, addresses=(str(address),))
    if not endpoint.host:
        raise ConninfoInvalid("url", "no host given (a data source names its server)")
    if endpoint.unix_socket:
        policy.check_unix_socket(endpoint.host)
        return Reach(endpoint, socket_dir=endpoint.host)
    return Reach(endpoint, addresses=tuple(policy.resolve(endpoint.host, endpoint.port)))


def judge(r: Reach, policy: OutboundPolicy) -> None:
    """Raises OutboundRefused if `policy` refuses where `r` connects."""
    if r.socket_dir is not None:
        policy.check_unix_socket(r.socket_dir)
        return
    for address in r.addresses:
        reason = policy.why_refused(address)
        if reason is None:
            continue
        if r.endpoint.hostaddr or r.endpoint.host.strip("[]") == address:
            raise OutboundRefused(f"address {address} is {reason}")
        log.info("data source host %s resolves to %s, %s", r.endpoint.host, address, reason)
        raise OutboundRefused(f"host {r.endpoint.host} resolves to {reason}")


def own_reaches(own_servers: list[str]) -> list[Reach]:
    """Where sqlbook's own servers are, with no policy (they are the operator's)."""
    everything = OutboundPolicy(allow_private=True)
    out = []
    for url in own_servers:
        try:
            found = endpoints(conninfo.conninfo_to_dict(url))
        except Exception:
            continue
        for endpoint in found:
            if endpoint.unix_socket:
                out.append(Reach(endpoint, socket_dir=endpoint.host))
                continue
            if not endpoint.host and not endpoint.hostaddr:
                endpoint = Endpoint("localhost", "", endpoint.port)
            try:
                addresses = (
                    (endpoint.hostaddr,)
                    if endpoint.hostaddr
                    else tuple(everything.resolve(endpoint.host, endpoint.port))
                )
            except (OutboundRefused, OutboundUnreachable):
                addresses = ()
            out.append(Reach(endpoint, addresses=addresses))
    return out


def _local_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    try:
        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                try:
                    out.add(ipaddress.ip_address(a.address.split("%", 1)[0]))
                except ValueError:
                    continue
    except OSError:
        pass
    return out


def is_own(candidate: Reach, own: list[Reach]) -> bool:
    """Whether `candidate` reaches one of sqlbook's own servers: the same socket
    directory and port, or the same address and port — where any address of this
    machine counts as the same as any other (a server on 127.0.0.1 may listen on all)."""
    local = _local_addresses()

    def norm(a: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return embedded_ipv4(ipaddress.ip_address(a.split("%", 1)[0]))

    def here(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return ip.is_loopback or ip.is_unspecified or ip in local

    port = candidate.endpoint.port
    for mine in own:
        if mine.endpoint.port != port:
            continue
        if candidate.socket_dir and mine.socket_dir:
            if same_socket_dir(candidate.socket_dir, mine.socket_dir):
                return True
            continue
        theirs = {norm(a) for a in candidate.addresses}
        ours = {norm(a) for a in mine.addresses}
        if theirs & ours:
            return True
        if any(here(a) for a in ours) and any(here(a) for a in theirs):
            return True
    return False


def pinned(url: str, reaches: list[Reach]) -> str:
    """`url` with every TCP endpoint pinned (libpq `hostaddr`) to the checked addresses,
    so libpq connects where the policy looked and resolves nothing itself."""
    hosts, addrs, ports = [], [], []
    for r in reaches:
        if r.socket_dir is not None:
            hosts.append(r.socket_dir)
            addrs.append("")
            ports.append(str(r.endpoint.port))
            continue
        for address in r.addresses:
            hosts.append(r.endpoint.host or address)
            addrs.append(address)
            ports.append(str(r.endpoint.port))
    return conninfo.make_conninfo(
        url, host=",".join(hosts), hostaddr=",".join(addrs), port=",".join(ports)
    )
