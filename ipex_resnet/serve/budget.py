"""One budget for the request-body bytes a worker process holds at once, shared by all its requests.

Every connection may send a body up to ``--max-body-bytes``; without a shared cap, ``--max-connections``
of them at once could hold gigabytes. A request reserves its bytes as they arrive (a declared
``Content-Length`` all up front, a chunked body chunk by chunk) and gives them back when it is finished,
whichever way. All of it runs on the worker's one event loop, and nothing awaits between the check and
the reservation, so no lock is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from ipex_resnet.serve.errors import Unavailable


class BodyBudget:
    def __init__(self, capacity: int, on_change: Callable[[int], None] | None = None):
        self.capacity, self.used = capacity, 0
        self.on_change = on_change or (lambda used: None)

    @contextlib.contextmanager
    def hold(self) -> Iterator[Reservation]:
        """A reservation for one request; everything it took is given back on leaving the block."""
        r = Reservation(self)
        try:
            yield r
        finally:
            r.release()

    def _take(self, n: int) -> bool:
        if self.used + n > self.capacity:
            return False
        self.used += n
        self.on_change(self.used)
        return True

    def _give(self, n: int) -> None:
        self.used -= n
        self.on_change(self.used)


class Reservation:
    """The bytes one request holds; ``take`` raises 503 ``body_budget`` when the budget cannot cover them."""

    def __init__(self, budget: BodyBudget):
        self.budget, self.held = budget, 0

    def take(self, n: int) -> None:
        if not self.budget._take(n):
            raise Unavailable(
                f"the server is holding as many request-body bytes as it may ({self.budget.capacity}); retry shortly",
                code="body_budget",
                headers={"Connection": "close"},
            )
        self.held += n

    def release(self) -> None:
        if self.held:
            self.budget._give(self.held)
            self.held = 0


__all__ = ["BodyBudget", "Reservation"]
