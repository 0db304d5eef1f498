"""Every option of ``ipex-resnet serve``, declared once: the dataclass field (its
:class:`~ipex_resnet.util.params.Param`, as ``ipex-resnet bench``'s options are declared) is the default,
the limits, the ``--flag`` and its help text; a bad value is one line of ConfigError (a ValueError)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ipex_resnet.errors import ConfigError
from ipex_resnet.imaging.decode import DEFAULT_MAX_PIXELS
from ipex_resnet.util.params import Param, check_fields, param_field, param_of


def _opt(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    minimum: float | None = None,
    choices: tuple[str, ...] | None = None,
    group: str = "service",
    type: Callable[[str], Any] | None = None,
) -> Any:
    """A field declared by its :class:`Param` (default, help, limits); ``flag``: another than ``--name``;
    ``group``: where its ``--flag`` is listed (``internal``: none)."""
    return param_field(Param(help, default, type, minimum=minimum, choices=choices), flag=flag, group=group)


@dataclass
class ServeConfig:
    # -- where to listen and how many processes -----------------------------------------------------
    host: str = _opt("127.0.0.1", "address to bind")
    port: int = _opt(8000, "port (0 picks a free one)", minimum=0)
    workers: int | None = _opt(
        None,
        "server processes on the port, each pinned to its own physical cores; "
        "default: the plan for this CPU (stated at startup)",
        minimum=1,
        type=int,
    )
    # -- batching -------------------------------------------------------------------------------------
    p99_ms: float = _opt(
        100.0,
        "latency target in ms: micro-batches stay within what the model's latency-vs-batch "
        "curve, measured at startup, allows for it (an image can wait for one batch and "
        "run in the next); a target below one batch-1 model call is refused at startup",
        minimum=0.001,
    )
    max_batch: int = _opt(
        16, "images per micro-batch at most (the --p99-ms target may allow fewer); 1 turns batching off", minimum=1
    )
    max_wait_ms: float = _opt(5.0, "longest the first image of a batch waits for company, in ms", minimum=0)
    pad_batches: str = _opt(
        "auto",
        "pad batches to power-of-two sizes warmed up at start; auto = on for "
        "inductor, which recompiles for every new batch shape",
        choices=("auto", "on", "off"),
    )
    preprocess_workers: int = _opt(2, "threads decoding and resizing images (per worker)", minimum=1)
    # -- result cache -------------------------------------------------------------------------------
    result_cache: str = _opt(
        "off",
        "cache top-k results of repeated images, keyed by the model's artifact key + "
        "exact: SHA-256 of the image bytes (a hit skips decoding and inference), or "
        "perceptual: a perceptual hash of the decoded image (re-encoded or resized "
        "copies hit; pip install 'ipex_resnet[resultcache]')",
        choices=("off", "exact", "perceptual"),
    )
    result_cache_size: int = _opt(4096, "entries the result cache holds (LRU), per worker", minimum=1)
    result_cache_bytes: int = _opt(64 * 2**20, "bytes the result cache holds at most (LRU), per worker", minimum=1)
    # -- admission and limits -------------------------------------------------------------------------
    max_queue: int = _opt(
        64, "requests admitted (body received) and not yet answered, per worker; past it 503 + Retry-After", minimum=1
    )
    max_connections: int = _opt(
        512, "open connections per worker; past it 503 + Retry-After and the connection is closed", minimum=1
    )
    max_body_bytes: int = _opt(20 * 2**20, "largest request body; past it 413", minimum=1)
    max_buffered_bytes: int = _opt(
        256 * 2**20,
        "request-body bytes one worker holds at once, all its requests "
        "together (arriving, or admitted and not yet answered); past "
        "it 503 + Retry-After. At least --max-body-bytes",
        minimum=1,
    )
    max_files: int = _opt(16, "most images in one request (multipart parts or OIP batch)", minimum=1)
    max_pixels: int = _opt(
        DEFAULT_MAX_PIXELS, "refuse an image whose declared size exceeds this many pixels", minimum=1, group="model"
    )
    max_request_pixels: int = _opt(
        128_000_000,
        "refuse a request whose images declare more pixels than this in total (read from the headers, before decoding)",
        minimum=1,
    )
    header_timeout_s: float = _opt(
        10.0,
        "seconds a connection may take to send a request's headers; then it is closed",
        flag="--header-timeout",
        minimum=0.001,
    )
    body_timeout_s: float = _opt(
        15.0,
        "seconds a request may take to send its body; then 408 and the connection is closed",
        flag="--body-timeout",
        minimum=0.001,
    )
    linger_timeout_s: float = _opt(
        2.0,
        "after an early answer that closes the connection (408, 413, 503) while "
        "the client is still sending, seconds to keep reading and discarding "
        "its bytes (at most 4 MiB) so that it gets the answer, not a TCP reset; "
        "0 closes at once",
        flag="--linger-timeout",
        minimum=0,
    )
    keepalive_timeout_s: float = _opt(
        5.0, "seconds an idle keep-alive connection is kept open", flag="--keepalive-timeout", minimum=0.001
    )
    request_timeout_s: float = _opt(
        30.0, "seconds from admission to answer; past it 504", flag="--request-timeout", minimum=0.001
    )
    stall_timeout_s: float = _opt(
        30.0,
        "if inference makes no progress for this long while work is waiting, /healthz and /readyz turn 503",
        flag="--stall-timeout",
        minimum=0.001,
    )
    retry_after_s: int = _opt(1, "the Retry-After value sent with every 503", flag="--retry-after", minimum=0)
    drain_delay_s: float = _opt(
        0.5,
        "on SIGTERM, seconds /readyz answers 503 while requests are still served, before the server stops accepting",
        flag="--drain-delay",
        minimum=0,
    )
    graceful_timeout_s: float = _opt(
        30.0,
        "on SIGTERM, seconds to finish admitted requests before cancelling them",
        flag="--graceful-timeout",
        minimum=0,
    )
    log_level: str = _opt("info", "logging level", choices=("critical", "error", "warning", "info", "debug"))
    access_log: bool = _opt(False, "log every request")
    tune: bool = _opt(
        True,
        "on the first start with this machine, model and --p99-ms: measure workers x streams "
        "(and the batch wait) with LoadGen's Server scenario against the service itself, "
        "start with the best and cache the choice (--no-tune: the plan's settings)",
    )
    #: what --tune chose, for the ready line (set by the command, not a flag)
    tuned: str = _opt("", "", group="internal")

    def __post_init__(self) -> None:
        check_fields(self, flag)  # ConfigError (a ValueError): "--max-batch must be at least 1, got 0"
        if self.max_buffered_bytes < self.max_body_bytes:
            raise ConfigError(
                f"--max-buffered-bytes ({self.max_buffered_bytes}) must be at least --max-body-bytes "
                f"({self.max_body_bytes}): otherwise a request of the largest allowed size could "
                f"never be received"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeConfig:
        values: dict[str, Any] = {f.name: getattr(args, f.name, f.default) for f in dataclasses.fields(cls)}
        return cls(**values)


def flag(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def add_arguments(p: argparse.ArgumentParser, groups: dict[str, argparse._ArgumentGroup]) -> None:
    """One ``--flag`` per field, into ``groups[field group]``; defaults and help come from the field."""
    for f in dataclasses.fields(ServeConfig):
        if f.metadata["group"] == "internal":
            continue
        g, param = groups[f.metadata["group"]], param_of(f)
        kw: dict[str, Any] = {"dest": f.name, "default": param.default, "help": param.help_text()}
        if isinstance(param.default, bool):  # off by default: --flag; on by default: --flag / --no-flag
            g.add_argument(flag(f), action=argparse.BooleanOptionalAction if param.default else "store_true", **kw)
            continue
        kw["type"] = param.value_type
        kw["metavar"] = flag(f)[2:].upper().replace("-", "_")
        if param.choices:
            kw["choices"] = param.choices
        g.add_argument(flag(f), **kw)
