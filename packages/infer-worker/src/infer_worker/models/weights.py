"""Copy weights in transformers' naming into a model with fused projections.

qkv_proj = [q; k; v] rows and gate_up_proj = [gate; up] rows: HF checkpoints
with separate q/k/v and gate/up projections are concatenated here, and
checkpoints that already store the fused names (Phi-3) are copied as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_FUSED_ORDER = {"qkv_proj": ("q", "k", "v"), "gate_up_proj": ("gate", "up")}
_FUSED_PARTS = {
    "q_proj": ("qkv_proj", "q"),
    "k_proj": ("qkv_proj", "k"),
    "v_proj": ("qkv_proj", "v"),
    "gate_proj": ("gate_up_proj", "gate"),
    "up_proj": ("gate_up_proj", "up"),
}


def load_hf_weights(model: nn.Module, tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Fill every parameter of model from (HF name, tensor) pairs.

    Raises KeyError naming a weight that is unknown, misshapen or missing.
    """
    own = dict(model.named_parameters())
    pending: dict[str, dict[str, torch.Tensor]] = {}
    filled: set[str] = set()
    tied = getattr(model, "lm_head", None) is None
    for name, tensor in tensors:
        target, part = fused_name(name)
        if target is None or (target == "lm_head.weight" and tied):
            continue
        if target not in own:
            raise KeyError(f"unexpected weight {name!r}")
        if part is None:
            _copy(own[target], tensor, name)
            filled.add(target)
            continue
        parts = pending.setdefault(target, {})
        parts[part] = tensor
        order = _FUSED_ORDER[target.rsplit(".", 2)[-2]]
        if all(p in parts for p in order):
            _copy(own[target], torch.cat([parts[p] for p in order], dim=0), target)
            filled.add(target)
            del pending[target]
    missing = sorted(set(own) - filled)
    if missing:
        raise KeyError(f"missing weights: {', '.join(missing[:5])}")


def fused_name(name: str) -> tuple[str | None, str | None]:
    """Map an HF weight name to (our parameter name, part of a fused weight or None)."""
    if name.endswith("rotary_emb.inv_freq"):
        return None, None
    if name.startswith("model."):
        name = name[len("model.") :]
    pieces = name.split(".")
    if len(pieces) >= 2 and pieces[-2] in _FUSED_PARTS:
        fused, part = _FUSED_PARTS[pieces[-2]]
        return ".".join([*pieces[:-2], fused, pieces[-1]]), part
    return name, None


def _copy(param: nn.Parameter, tensor: torch.Tensor, name: str) -> None:
    if tuple(param.shape) != tuple(tensor.shape):
        raise KeyError(
            f"weight {name!r} has shape {tuple(tensor.shape)}, expected {tuple(param.shape)}"
        )
    with torch.no_grad():
        param.copy_(tensor)
