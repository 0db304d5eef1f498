"""The model's life in one server process: loaded once on a thread of its own, warmed up and its batch
capped by the latency target, then served by the micro-batcher until the server stops; and the flags the
health checks read (ready, draining, stopping, the load error)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ipex_resnet.serve.batching import Batcher
from ipex_resnet.serve.config import ServeConfig
from ipex_resnet.serve.errors import Unavailable
from ipex_resnet.serve.handler import Handler
from ipex_resnet.serve.metrics import ServiceMetrics

if TYPE_CHECKING:
    from ipex_resnet.core.classifier import Classifier
    from ipex_resnet.core.result_cache import ResultCache

log = logging.getLogger("ipex_resnet.serve")


@dataclass(frozen=True)
class Serving:
    """A loaded model: its handler and the micro-batcher that runs it."""

    handler: Handler
    batcher: Batcher


def load_handler(loader: Callable[[], Classifier], cfg: ServeConfig, result_cache: ResultCache | None) -> Handler:
    """Load, warm up every batch size, measure the latency-vs-batch curve and cap the batch by the
    target (a target one batch-1 call misses raises ConfigError: the service refuses to start)."""
    from ipex_resnet.serve import tuning
    from ipex_resnet.serve.batching import warmup_sizes

    handler = Handler(loader(), pad_batches=cfg.pad_batches, result_cache=result_cache)
    handler.warm_up(cfg.max_batch)
    plan = handler.clf.plan
    curve = tuning.latency_curve(
        handler.predict, handler.image_shape, warmup_sizes(cfg.max_batch, True), stop_above_ms=cfg.p99_ms / 2
    )
    tuning.check_target(cfg.p99_ms, curve, f"{plan.model} on {plan.backend}/{plan.precision}")
    cap = tuning.batch_cap(cfg.p99_ms, cfg.max_wait_ms, curve)
    handler.max_batch = min(cfg.max_batch, cap)
    handler.shaping = tuning.describe(cfg.p99_ms, handler.max_batch, curve)
    return handler


class Lifecycle:
    """Loading -> ready -> draining (readiness 503, requests still served) -> stopping (the batcher
    finishes what it has). ``more_coming`` goes to the batcher; ``on_fatal(exc)`` is called when the model
    cannot be loaded (the server exits)."""

    def __init__(
        self,
        loader: Callable[[], Classifier],
        cfg: ServeConfig,
        metrics: ServiceMetrics,
        *,
        result_cache: ResultCache | None,
        more_coming: Callable[[], bool],
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.loader, self.cfg, self.metrics = loader, cfg, metrics
        self.result_cache, self.more_coming, self.on_fatal = result_cache, more_coming, on_fatal
        self.serving: Serving | None = None  # once loaded
        self.ready = False
        self.draining = False  # readiness is 503 (SIGTERM received); requests are still served
        self.stopping = False  # the server stopped accepting; the batcher finishes what it has
        self.load_error: str | None = None
        self.loading: concurrent.futures.Future[Handler] | None = None
        self.load_thread: threading.Thread | None = None

    def loaded(self) -> Serving:
        """The loaded model, or 503 ``not_ready``."""
        if self.serving is None:
            raise Unavailable("the model is loading and warming up; retry shortly", code="not_ready")
        return self.serving

    def start_loading(self) -> concurrent.futures.Future[Handler]:
        """Load and warm up the model (once) on a daemon thread of its own, not the loop's executor,
        whose threads the interpreter joins at exit: a server stopped while its model still compiles
        does not wait for it. The future holds the :class:`Handler`."""
        if self.loading is None:
            done: concurrent.futures.Future[Handler] = concurrent.futures.Future()
            self.loading = done

            def work() -> None:
                try:
                    done.set_result(load_handler(self.loader, self.cfg, self.result_cache))
                except BaseException as exc:
                    done.set_exception(exc)

            self.load_thread = threading.Thread(target=work, name="ipex-resnet-load", daemon=True)
            self.load_thread.start()
        return self.loading

    def report_load_error(self, exc: BaseException) -> None:
        """Remember and log why the model could not be loaded (for /healthz and the log)."""
        from ipex_resnet.errors import IpexResnetError

        # an IpexResnetError's message is written for the user; anything else stays in the log
        known = isinstance(exc, IpexResnetError)
        self.load_error = str(exc) if known else f"{type(exc).__name__} (see the server log)"
        log.error("error: could not load the model: %s", exc, exc_info=not known)

    async def load(self) -> None:
        """Wait for the model (loading it unless :meth:`start_loading` already did), then start the
        batcher and turn ready. ``asyncio.wrap_future`` drops the result if the loop has closed by then."""
        try:
            handler = await asyncio.wrap_future(self.start_loading())
        except Exception as exc:
            self.report_load_error(exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)
            return
        self.serving = Serving(handler, self._start_batcher(handler))
        plan = handler.clf.plan
        self.metrics.info.labels(plan.model, plan.backend, plan.precision).set(1)
        self.ready = True
        self._log_ready(handler)

    def _start_batcher(self, handler: Handler) -> Batcher:
        cfg = self.cfg
        batcher = Batcher(
            handler.predict,
            handler.topk,
            max_batch=handler.max_batch or cfg.max_batch,
            max_wait_s=cfg.max_wait_ms / 1000,
            max_queue=cfg.max_queue * cfg.max_files,
            pad=handler.pad,
            metrics=self.metrics,
            more_coming=self.more_coming,
            streams=handler.clf.streams,
        )
        batcher.start()
        return batcher

    def _log_ready(self, handler: Handler) -> None:
        cfg, clf = self.cfg, handler.clf
        log.info(
            "ready: %s, backend=%s, precision=%s, streams=%d x %d thread(s), max_batch=%d, max_wait=%.1f ms%s; %s; %s",
            clf.plan.model,
            clf.plan.backend,
            clf.plan.precision,
            clf.streams,
            clf.plan.threads_per_stream,
            handler.max_batch,
            cfg.max_wait_ms,
            ", padded batches" if handler.pad else "",
            f"{cfg.tuned}; {handler.shaping}" if cfg.tuned else handler.shaping,
            self.result_cache.describe() if self.result_cache is not None else "result cache off",
        )

    async def stop(self) -> None:
        """Readiness and acceptance off; the batcher finishes everything already queued (for at most
        ``graceful_timeout_s``)."""
        self.draining, self.stopping, self.ready = True, True, False
        self.metrics.ready.set(0)
        if self.serving is not None:
            await self.serving.batcher.stop(self.cfg.graceful_timeout_s)


__all__ = ["Lifecycle", "Serving", "load_handler"]
