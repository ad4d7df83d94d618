"""Loading a model for serving, shared by the engine process and the offline `LLM`.

Invariant: `infer-scheduler --model M` and `LLM(M)` with the same keywords run the same
weights on the same paths. `dtype="auto"` is bfloat16 on a CPU with avx512_bf16/AMX
(float32 otherwise, bfloat16 on CUDA), and a CPU bf16 model gets the serving fast paths
(int8/int4 linears, float32 GEMMs for long steps) unless they are turned off;
`dtype="float32"` keeps the exact path (no fast path touches a float32 model).
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class LoadOptions:
    """The loader's and the CPU fast paths' settings (the engine CLI's flags of those names)."""

    device: str = "auto"
    dtype: str = "auto"
    gguf_weights: str = "auto"
    quantize: str | None = None
    int8_max_batch: int | None = None  # None: every step (`--int8-max-batch all`)
    float32_min_batch: int = 64
    int4_decode: str = "auto"

    def __attrs_post_init__(self) -> None:
        if self.int8_max_batch is not None and self.int8_max_batch < 0:
            raise ValueError("int8_max_batch must be >= 0 (or None: every step)")
        if self.float32_min_batch < 0:
            raise ValueError("float32_min_batch must be >= 0")
        if self.int4_decode not in ("auto", "on", "off"):
            raise ValueError("int4_decode must be one of auto, on, off")


def load_for_serving(model: str, options: LoadOptions) -> tuple[Any, list[str]]:
    """(ModelBundle, names of the CPU fast paths turned on); ModelLoadError if it cannot load."""
    from infer_worker import load_model
    from infer_worker.cpu_serving import (
        ALL_ROWS,
        int4_wanted,
        prepare_cpu_serving,
        serving_dtype,
    )
    from infer_worker.loader import resolve_device

    dtype = serving_dtype(options.dtype, resolve_device(options.device))
    bundle = load_model(
        model,
        device=options.device,
        dtype=dtype,
        gguf_weights=options.gguf_weights,
        quantize=options.quantize,
    )
    rows = ALL_ROWS if options.int8_max_batch is None else options.int8_max_batch
    fast = prepare_cpu_serving(
        bundle.model,
        bundle.dtype,
        rows,
        options.float32_min_batch,
        int4_wanted(options.int4_decode, bundle.linear_qtype),
    )
    return bundle, fast
