"""Where a model call may go: the group's policy decided on every address the host resolves to.

`on_prem` (the default) allows a host only when EVERY address it resolves to (IPv4 and IPv6) is
loopback, private (RFC 1918, fc00::/7) or link-local, or when the host is on the operator's
allowlist. `cloud_allowed` allows any host. The decision returns the checked addresses, and
the transport (companion.llm.transport) connects to one of those, never to the name again.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection, Sequence
from typing import TypeAlias

import httpx

from companion.llm.errors import ModelUnavailable, PolicyRefused
from companion.method.policy import Policy

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# The networks that stay on the premises.
ON_PREM_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",  # RFC 1918
        "192.168.0.0/16",  # RFC 1918
        "169.254.0.0/16",  # link-local
        "::1/128",  # loopback
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
    )
)

# host, port -> the addresses it resolves to; raises OSError when it cannot be resolved.
Resolver: TypeAlias = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address of `host`, IPv4 and IPv6, as socket.getaddrinfo gives them, in order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def host_of(url: str) -> str:
    return normalise_host(httpx.URL(url).host)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_on_prem_address(text: str) -> bool:
    """Loopback, private or link-local (IPv4-mapped IPv6 judged as its IPv4)."""
    address = _address(text)
    return address is not None and any(address in net for net in ON_PREM_NETWORKS)


def _allowlisted(host: str, addresses: Sequence[str], allowlist: Collection[str]) -> bool:
    """The host is named on the allowlist, or every address is in a network listed there."""
    names = {normalise_host(entry) for entry in allowlist}
    if host in names:
        return True
    networks: list[IPNetwork] = []
    for entry in names:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    parsed = [_address(a) for a in addresses]
    return bool(networks and parsed) and all(
        a is not None and any(a in net for net in networks) for a in parsed
    )


def decide(
    policy: Policy | str,
    host: str,
    port: int,
    *,
    allowlist: Collection[str] = (),
    resolver: Resolver = system_resolver,
) -> list[str]:
    """The addresses a model call to host:port may connect to; PolicyRefused otherwise.

    The host is resolved once here; the caller must connect to one of the returned addresses.
    """
    policy = Policy(policy)
    name = normalise_host(host)
    if _address(name) is not None:
        addresses = [name]
    else:
        try:
            addresses = list(dict.fromkeys(resolver(name, port)))
            if not addresses:
                raise OSError("no address")
        except (OSError, UnicodeError) as exc:
            if policy is Policy.on_prem and not _allowlisted(name, (), allowlist):
                raise PolicyRefused(
                    policy, name, f"cannot be resolved ({exc}), so it cannot be checked"
                ) from None
            raise ModelUnavailable(
                f"The model endpoint host '{name}' cannot be resolved ({exc}); check "
                "COMPANION_LLM_BASE_URL and the DNS, then retry."
            ) from None
    if policy is Policy.cloud_allowed or _allowlisted(name, addresses, allowlist):
        return addresses
    outside = [a for a in addresses if not is_on_prem_address(a)]
    if outside:
        raise PolicyRefused(
            policy,
            name,
            f"resolves to {', '.join(outside)}, outside the loopback, private and link-local "
            "networks",
        )
    return addresses
