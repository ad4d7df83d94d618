"""Family: what a model family module declares (kept apart from registry.py to avoid cycles)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .decoder import CausalLM
from .hf_config import HFConfig


@dataclass(frozen=True)
class Family:
    """A family: its HF architectures, how it reads its config, and its model class.

    read(cfg, common) gets the common fields already parsed and returns the family's
    ModelConfig keyword arguments (overriding common ones); it raises
    cfg.refuse(field, why) for what it does not implement.
    """

    name: str
    architectures: tuple[str, ...]
    read: Callable[[HFConfig, dict[str, Any]], dict[str, Any]]
    model_class: type[CausalLM] = field(default=CausalLM)
    partial_rotary: bool = False  # read() handles partial_rotary_factor itself (Phi-3)
