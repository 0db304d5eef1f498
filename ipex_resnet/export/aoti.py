"""AOTInductor packages, written and read in one place for the Inductor engine and its INT8 flow.

A package holds two models in the format's multi-model layout (``torch._inductor.package.package_aoti``):
:data:`DYNAMIC` (any batch size, the package's default model) and :data:`BATCH1` (specialized for a
batch of one: oneDNN picks faster kernels when it knows the batch, and batch 1 is the latency case).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

DYNAMIC = "model"  #: the package's default model: any batch size
BATCH1 = "batch1"  #: the same model specialized for a batch of one
MAX_BATCH = 1024
OPTIONS = {"aot_inductor.package": True, "freezing": True}


@contextlib.contextmanager
def quiet_cpp_builder():
    """torch's C++ builder logs "No CUDA runtime is found" on CUDA wheels: not news on a CPU box."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def compile_package(model, example, path: Path, *, strict: bool = False, autocast_bf16: bool = False) -> Path:
    """Export ``model`` (channels-last input, as the loaders feed it: AOTInductor trusts the strides it
    was compiled for) and write the two-model package at ``path``. ``strict`` selects torch.export's
    strict tracing (the PT2E flow needs it); ``autocast_bf16`` compiles under CPU BF16 autocast."""
    import torch
    from torch._inductor.package import package_aoti

    x = torch.as_tensor(example).float()
    # A batch of 1 would be specialised away: export the dynamic model with 2 rows.
    two = x[:1].expand(2, *x.shape[1:]).contiguous(memory_format=torch.channels_last)
    one = x[:1].contiguous(memory_format=torch.channels_last)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with (
        quiet_cpp_builder(),
        torch.no_grad(),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16),
        warnings.catch_warnings(),
    ):
        # Inductor's own int8 lowering copy-constructs a tensor; not the user's business
        warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
        dynamic = torch.export.export(model, (two,), dynamic_shapes=({0: batch},), strict=strict)
        single = torch.export.export(model, (one,), strict=strict)
        files = {
            DYNAMIC: torch._inductor.aot_compile(dynamic.module(), (two,), options=OPTIONS),
            BATCH1: torch._inductor.aot_compile(single.module(), (one,), options=OPTIONS),
        }
        package_aoti(str(path), files)  # type: ignore[arg-type]  # a dict of compiled .so paths per model name
    return Path(path)


def load_package(path: Path, model_name: str = DYNAMIC):
    """``x -> logits`` from an AOTInductor package. Goes straight to the C++ package loader that
    ``torch._inductor.aoti_load_package`` wraps: importing ``torch._inductor`` costs seconds at every
    start, and the wrapper's pytree (un)flattening adds Python per call."""
    import torch

    native = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    if native is None:  # a torch without the native loader: the public wrapper
        with quiet_cpp_builder():
            package = torch._inductor.aoti_load_package(str(path), model_name=model_name)  # type: ignore[call-arg]
        return lambda x: package(x)
    loader = native(str(path), model_name, False, 1, -1)  # (path, name, single-threaded, runners, device)
    return lambda x: loader.boxed_run([x])[0]


__all__ = ["BATCH1", "DYNAMIC", "MAX_BATCH", "compile_package", "load_package", "quiet_cpp_builder"]
