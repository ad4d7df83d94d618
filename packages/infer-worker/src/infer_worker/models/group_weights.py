"""Fill a model from (HF name, value) pairs where matrices may be in kernel formats.

A Linear's weight (fused qkv_proj / gate_up_proj parts included) and the embedding
become one StackedWeight each, held instead of the float weight (Linear.use_group,
CausalLM.use_embed_group); everything else is copied as load_hf_weights does.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..quant.formats import GroupWeight
from ..quant.weights import StackedWeight
from .layers import Linear
from .weights import _FUSED_ORDER, _copy, fused_name


def _is_matrix(value: GroupWeight | torch.Tensor) -> bool:
    return isinstance(value, GroupWeight) or value.dim() == 2


def load_group_weights(
    model: nn.Module, tensors: Iterable[tuple[str, GroupWeight | torch.Tensor]]
) -> None:
    """Fill every weight of model; raises KeyError naming a weight unknown, misshapen or missing."""
    own = dict(model.named_parameters())
    modules = dict(model.named_modules())
    tied = getattr(model, "lm_head", None) is None
    pending: dict[str, dict[str, GroupWeight | torch.Tensor]] = {}
    filled: set[str] = set()
    for name, value in tensors:
        target, part = fused_name(name)
        if target is None or (target == "lm_head.weight" and tied):
            continue
        if target not in own:
            raise KeyError(f"unexpected weight {name!r}")
        owner = modules.get(target.rsplit(".", 1)[0]) if "." in target else None
        held = target == "embed_tokens.weight" or isinstance(owner, Linear)
        if not (held and target.endswith(".weight") and _is_matrix(value)):
            _copy(own[target], value, name)
            filled.add(target)
            continue
        parts = pending.setdefault(target, {})
        parts[part or ""] = value
        order = _FUSED_ORDER[target.rsplit(".", 2)[-2]] if part else ("",)
        if not all(p in parts for p in order):
            continue
        stack = StackedWeight([parts[p] for p in order])
        del pending[target]
        try:
            if isinstance(owner, Linear):
                owner.use_group(stack)
            else:
                model.use_embed_group(stack)
        except KeyError as exc:
            raise KeyError(f"{target}: {exc.args[0]}") from None
        filled.add(target)
    missing = sorted(set(own) - filled)
    if missing:
        raise KeyError(f"missing weights: {', '.join(missing[:5])}")
