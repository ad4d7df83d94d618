"""The infer engine: continuous batching over a paged KV cache with a radix prefix cache.

Offline use: `from infer_scheduler import LLM, SamplingParams` (vLLM's
keywords, offline_params.py). `LLM` is
imported lazily so the policy modules stay importable without loading torch
models.
"""

from typing import Any

from .offline_params import SamplingParams

__version__ = "0.1.0"
__all__ = [
    "LLM",
    "CompletionOutput",
    "Engine",
    "EngineOptions",
    "RequestOutput",
    "SamplingParams",
]


def __getattr__(name: str) -> Any:
    if name in ("LLM", "RequestOutput", "CompletionOutput"):
        from . import llm

        return getattr(llm, name)
    if name == "Engine":
        from .engine import Engine

        return Engine
    if name == "EngineOptions":
        from .options import EngineOptions

        return EngineOptions
    raise AttributeError(f"module 'infer_scheduler' has no attribute {name!r}")
