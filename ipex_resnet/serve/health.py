"""Health, read from the model's :class:`~ipex_resnet.serve.lifecycle.Lifecycle`: liveness (can the process
make progress? a loading model can; a failed load or a stuck batch cannot), readiness (also: loaded, and
not draining) and whether new work is accepted (while draining it still is). Each problem is an
:class:`~ipex_resnet.serve.errors.Unavailable`: 503 with Retry-After, its code saying why."""

from __future__ import annotations

from ipex_resnet.serve.errors import Unavailable
from ipex_resnet.serve.lifecycle import Lifecycle


class Health:
    def __init__(self, life: Lifecycle, stall_timeout_s: float):
        self.life, self.stall_timeout_s = life, stall_timeout_s

    def liveness(self) -> Unavailable | None:
        """Is the process able to make progress? (A loading model is healthy; a stuck batch is not.)"""
        life = self.life
        if life.load_error:
            return Unavailable(f"the model failed to load: {life.load_error}", code="load_failed")
        if life.serving is not None:
            why = life.serving.batcher.problem(self.stall_timeout_s)
            if why:
                return Unavailable(f"inference is not making progress: {why}", code="inference_stalled")
        return None

    def _serving(self, shutting_down: bool) -> Unavailable | None:
        if shutting_down:
            return Unavailable("the service is shutting down", code="shutting_down")
        problem = self.liveness()
        if problem is None and not self.life.ready:
            problem = Unavailable("the model is loading and warming up; retry shortly", code="not_ready")
        return problem

    def readiness(self) -> Unavailable | None:
        """Should the load balancer send requests here? Not while loading, stalled or draining."""
        return self._serving(self.life.draining)

    def check_accepting(self) -> None:
        """New work is refused while loading, stalled or stopping (503 + Retry-After). While draining
        (readiness already 503, the load balancer taking the instance out) requests are still served."""
        problem = self._serving(self.life.stopping)
        if problem is not None:
            raise problem


__all__ = ["Health"]
