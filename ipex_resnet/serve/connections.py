"""Connection-level guards, below the app: a cap on open connections (past it a JSON 503 and close)
and a deadline for each request's headers (a connection that does not finish its headers in time is
closed: 408 if it sent something, silently if it was idle).

uvicorn takes the HTTP protocol class as a public option (``Config(http=...)``); this subclasses its
h11 protocol and only wraps the ``asyncio.Protocol`` callbacks and ``on_response_complete``.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.h11_impl import H11Protocol


def _raw_response(status: int, reason: str, code: str, message: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"error": {"status": status, "code": code, "message": message}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class ConnectionStats:
    """Shared by every connection of one server: how many are open, and what was refused or cut."""

    def __init__(self, max_connections: int, header_timeout_s: float, retry_after_s: int, on_event=None):
        self.max_connections, self.header_timeout_s = max_connections, header_timeout_s
        self.retry_after_s = retry_after_s
        self.open = 0
        self.on_event = on_event or (lambda kind: None)  # "refused" | "header_timeout"


def guarded_protocol(stats: ConnectionStats) -> type[H11Protocol]:
    refuse = _raw_response(503, "Service Unavailable", "too_many_connections",
                           f"the server has {stats.max_connections} open connections, its limit; retry shortly",
                           stats.retry_after_s)
    too_slow = _raw_response(408, "Request Timeout", "header_timeout",
                             f"the request headers did not arrive within {stats.header_timeout_s:g} s")

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport):
            self.guard_transport = transport
            self.guard_timer: asyncio.TimerHandle | None = None
            self.guard_refused = stats.open >= stats.max_connections
            if self.guard_refused:  # answer once the request arrives (no RST on unread data), then close
                stats.on_event("refused")
                self.guard_timer = asyncio.get_running_loop().call_later(stats.header_timeout_s, transport.close)
                return
            stats.open += 1
            super().connection_made(transport)
            self.guard_arm()

        def guard_arm(self) -> None:
            """Wait for the next request's headers (a fresh connection, or the next one on keep-alive)."""
            self.guard_cancel()
            self.guard_tail, self.guard_got_bytes = b"", False
            self.guard_timer = asyncio.get_running_loop().call_later(stats.header_timeout_s, self.guard_expired)

        def guard_cancel(self) -> None:
            if self.guard_timer is not None:
                self.guard_timer.cancel()
                self.guard_timer = None

        def guard_expired(self) -> None:
            self.guard_timer = None
            if self.guard_transport.is_closing():
                return
            if self.guard_got_bytes:
                stats.on_event("header_timeout")
                self.guard_transport.write(too_slow)
            self.guard_transport.close()

        def data_received(self, data: bytes) -> None:
            if self.guard_refused:
                if not self.guard_transport.is_closing():
                    self.guard_transport.write(refuse)
                    self.guard_transport.close()
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
            if not self.guard_transport.is_closing():
                self.guard_arm()

        def connection_lost(self, exc) -> None:
            self.guard_cancel()
            if self.guard_refused:
                return
            stats.open -= 1
            super().connection_lost(exc)

    return GuardedH11Protocol
