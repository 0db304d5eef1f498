"""Connection-level guards, below the app: a cap on open connections (past it a JSON 503 and close),
a deadline for each request's headers (a connection that does not finish its headers in time is
closed: 408 if it sent something, silently if it was idle), and a lingering close.

Lingering close (as Apache and nginx do it): when the server closes a connection right after an early
answer (408, 413, a 503 refusal) while the client is still sending its request, closing the socket at
once makes the kernel answer the unread bytes with a TCP reset, and a reset may destroy the answer
before the client reads it. So the server shuts down only its write side (the answer, then FIN), keeps
reading and discarding whatever the client still sends, and closes when the client closes, or after
``linger_s`` or ``LINGER_MAX_BYTES``, whichever comes first. A lingering connection still counts as
open (``--max-connections``) until it is really closed.

uvicorn takes the HTTP protocol class as a public option (``Config(http=...)``); this subclasses its
h11 protocol, wraps the ``asyncio.Protocol`` callbacks and ``on_response_complete``/``shutdown``, and
hands uvicorn a transport whose ``close()`` lingers when the client may still be sending (uvicorn
closes through ``self.transport.close()``, also in the request cycle, which shares the transport).
"""

from __future__ import annotations

import asyncio
import json
from typing import cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

LINGER_MAX_BYTES = 4 * 2**20  # discarded while lingering; past it the connection is closed at once


def _raw_response(status: int, reason: str, code: str, message: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"error": {"status": status, "code": code, "message": message}}).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class ConnectionStats:
    """Shared by every connection of one server: how many are open, and what was refused or cut."""

    def __init__(
        self, max_connections: int, header_timeout_s: float, retry_after_s: int, on_event=None, linger_s: float = 2.0
    ):
        self.max_connections, self.header_timeout_s = max_connections, header_timeout_s
        self.retry_after_s, self.linger_s = retry_after_s, linger_s
        self.open = 0
        self.lingering = 0
        self.on_event = on_event or (lambda kind: None)  # "refused" | "header_timeout"


class _Transport:
    """The transport as uvicorn sees it: ``close()`` asks the protocol (which may linger), and once
    lingering it reports closing and ignores uvicorn's flow control (the protocol reads to discard)."""

    def __init__(self, raw: asyncio.Transport, protocol):
        self._raw, self._protocol = raw, protocol

    def __getattr__(self, name):
        return getattr(self._raw, name)

    def close(self) -> None:
        self._protocol.guard_close()

    def is_closing(self) -> bool:
        return self._protocol.guard_lingering or self._raw.is_closing()

    def pause_reading(self) -> None:
        if not self._protocol.guard_lingering:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if not self._protocol.guard_lingering:
            self._raw.resume_reading()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the guards; :func:`guarded_protocol` binds it to one server's stats."""

    guard_stats: ConnectionStats
    guard_refuse: bytes  # the 503 for a connection over the cap
    guard_too_slow: bytes  # the 408 for headers that did not arrive in time

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn declares it
        self.guard_raw = transport
        self.guard_timer: asyncio.TimerHandle | None = None
        self.guard_lingering, self.guard_discarded = False, 0
        self.guard_got_bytes = False
        stats = self.guard_stats
        self.guard_refused = stats.open >= stats.max_connections
        if self.guard_refused:  # answer once the request arrives (no RST on unread data), then close
            stats.on_event("refused")
            self.guard_timer = asyncio.get_running_loop().call_later(stats.header_timeout_s, transport.close)
            return
        stats.open += 1
        super().connection_made(cast(asyncio.Transport, _Transport(transport, self)))  # a proxy for the transport
        self.guard_arm()

    def guard_arm(self) -> None:
        """Wait for the next request's headers (a fresh connection, or the next one on keep-alive)."""
        self.guard_cancel()
        self.guard_tail, self.guard_got_bytes = b"", False
        timeout_s = self.guard_stats.header_timeout_s
        self.guard_timer = asyncio.get_running_loop().call_later(timeout_s, self.guard_expired)

    def guard_cancel(self) -> None:
        if self.guard_timer is not None:
            self.guard_timer.cancel()
            self.guard_timer = None

    def guard_expired(self) -> None:
        self.guard_timer = None
        if self.guard_raw.is_closing() or self.guard_lingering:
            return
        if self.guard_got_bytes:
            self.guard_stats.on_event("header_timeout")
            self.guard_raw.write(self.guard_too_slow)
            self.guard_linger()  # it may still be sending its headers
        else:
            self.guard_raw.close()

    # -- closing -----------------------------------------------------------------------------
    def guard_close(self) -> None:
        """uvicorn closes the connection: linger if the client may still be sending its request
        (its body, or the headers of one that has begun), else close at once."""
        if self.guard_lingering or self.guard_raw.is_closing():
            return
        their = self.conn.their_state
        if their is h11.SEND_BODY or (their is h11.IDLE and self.guard_got_bytes):
            self.guard_linger()
        else:
            self.guard_raw.close()

    def guard_linger(self) -> None:
        """Send what is written and then FIN; read and discard until the client closes or a bound."""
        raw, stats = self.guard_raw, self.guard_stats
        if stats.linger_s <= 0:
            raw.close()
            return
        self.guard_cancel()
        self.guard_lingering = True
        stats.lingering += 1
        if raw.can_write_eof():
            raw.write_eof()  # the FIN follows the answer's bytes still buffered
        raw.resume_reading()  # uvicorn may have paused reading (flow control)
        self.guard_timer = asyncio.get_running_loop().call_later(stats.linger_s, raw.close)

    def shutdown(self) -> None:
        if self.guard_lingering:  # the server is stopping: no need to wait for the client
            self.guard_raw.close()
            return
        super().shutdown()

    # -- asyncio.Protocol callbacks ----------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.guard_lingering:
            self.guard_discarded += len(data)
            if self.guard_discarded > LINGER_MAX_BYTES:
                self.guard_raw.close()
            return
        if self.guard_refused:
            if not self.guard_raw.is_closing():
                self.guard_raw.write(self.guard_refuse)
                self.guard_linger()  # it may be sending a body
            return
        if self.guard_timer is not None:
            self.guard_got_bytes = True
            if b"\r\n\r\n" in self.guard_tail + data:  # the headers are complete: the body has its own deadline
                self.guard_cancel()
            else:
                self.guard_tail = (self.guard_tail + data)[-3:]
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.guard_arm()

    def connection_lost(self, exc) -> None:
        self.guard_cancel()
        if self.guard_lingering:
            self.guard_stats.lingering -= 1
        if self.guard_refused:
            return
        self.guard_stats.open -= 1
        super().connection_lost(exc)


def guarded_protocol(stats: ConnectionStats) -> type[H11Protocol]:
    """The protocol class to hand uvicorn (``Config(http=...)``) for one server, counting in ``stats``."""
    refuse = _raw_response(
        503,
        "Service Unavailable",
        "too_many_connections",
        f"the server has {stats.max_connections} open connections, its limit; retry shortly",
        stats.retry_after_s,
    )
    too_slow = _raw_response(
        408,
        "Request Timeout",
        "header_timeout",
        f"the request headers did not arrive within {stats.header_timeout_s:g} s",
    )
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"guard_stats": stats, "guard_refuse": refuse, "guard_too_slow": too_slow},
    )
