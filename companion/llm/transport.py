"""The HTTP client for model calls: the policy is enforced at the socket, before a byte is sent.

`GuardedBackend` wraps httpcore's network backend: for every new connection it resolves the
host once, has the policy check every address, then connects to a checked address (never to
the name, so a second DNS answer cannot slip a public address in). The client built here does
not follow redirects and ignores proxy settings from the environment.
"""

from __future__ import annotations

import ssl
from collections.abc import Collection, Iterable

import httpcore
import httpx

from companion.llm.policy import Resolver, decide, system_resolver
from companion.method.policy import Policy


class GuardedBackend(httpcore.NetworkBackend):
    def __init__(
        self,
        policy: Policy,
        allowlist: Collection[str] = (),
        resolver: Resolver = system_resolver,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.allowlist = tuple(allowlist)
        self.resolver = resolver
        self.inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = decide(
            self.policy, host, port, allowlist=self.allowlist, resolver=self.resolver
        )
        options = list(socket_options or ())
        failure: Exception | None = None
        for address in addresses:
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # decide() never returns an empty list
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("model calls do not use Unix sockets")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport (request mapping, error mapping) on a pool with a guarded backend."""

    def __init__(
        self, backend: GuardedBackend, ssl_context: ssl.SSLContext, max_connections: int = 10
    ) -> None:
        # HTTPTransport.__init__ would only build a default pool; this one replaces it.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            network_backend=backend,
            retries=0,
        )


def guarded_client(
    policy: Policy,
    *,
    timeout: httpx.Timeout,
    allowlist: Collection[str] = (),
    resolver: Resolver = system_resolver,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.Client:
    backend = GuardedBackend(policy, allowlist, resolver)
    transport = GuardedTransport(backend, ssl_context or httpx.create_ssl_context())
    return httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )
