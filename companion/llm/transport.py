"""The HTTP client for model calls: the policy is enforced at the socket, before a byte is sent.

`GuardedBackend` wraps httpcore's network backend: for every new connection it resolves the
host once, has the policy check every address, then connects to a checked address (never to
the name, so a second DNS answer cannot slip a public address in). The client built here does
not follow redirects and ignores proxy settings from the environment.

Its connections can also be hung up from another thread (`hangup`): a local server reading a
long prompt sends nothing for seconds, so a call given up would otherwise hold the server until
its first chunk.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpcore
import httpx

from companion.llm.policy import Resolver, decide, system_resolver
from companion.method.policy import Policy


class Hangup:
    """Lets another thread end the model calls one thread makes while this is held (`hangup`):
    the read under way, or the next one, raises the reason given, and the connection is shut,
    so that the server sees its client gone and stops working on the call."""

    def __init__(self) -> None:
        self.reason: Exception | None = None
        self._reading: httpcore.NetworkStream | None = None
        self._lock = threading.Lock()

    def __call__(self, reason: Exception) -> None:
        with self._lock:
            self.reason = reason
            stream = self._reading
        if stream is not None:
            sock = stream.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                with suppress(OSError):  # already closed: nothing to end
                    sock.shutdown(socket.SHUT_RDWR)

    def read(self, stream: httpcore.NetworkStream, max_bytes: int, timeout: float | None) -> bytes:
        with self._lock:
            if self.reason is not None:
                raise self.reason
            self._reading = stream
        try:
            data = stream.read(max_bytes, timeout)
        except Exception:
            reason = self._ended()
            if reason is not None:
                raise reason from None
            raise
        reason = self._ended()
        if reason is not None:
            raise reason
        return data

    def _ended(self) -> Exception | None:
        with self._lock:
            self._reading = None
            return self.reason


_held = threading.local()  # .hangup: the Hangup of this thread's calls, while one is held


@contextmanager
def hangup() -> Iterator[Hangup]:
    """The model calls this thread makes inside the block can be ended by calling what it
    yields, from any thread."""
    held = Hangup()
    _held.hangup = held
    try:
        yield held
    finally:
        _held.hangup = None


class _Watched(httpcore.NetworkStream):
    """A connection whose reads go through the reading thread's Hangup, if it holds one."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        held: Hangup | None = getattr(_held, "hangup", None)
        if held is None:
            return self._inner.read(max_bytes, timeout)
        return held.read(self._inner, max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Watched(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


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
                return _Watched(
                    self.inner.connect_tcp(address, port, timeout, local_address, options)
                )
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
