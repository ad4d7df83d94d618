"""Shared layers: Linear (with its weight formats), RMSNorm, activations, the gated MLP.

Every layer computes what transformers' module of the same name computes; the
fused CPU kernels (fused_cpu.py) are used where they apply and return None
elsewhere (other dtypes, large inputs, inside a torch.compile trace).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import fused_cpu
from ..int4 import GROUP, Int4Weight
from ..int8 import WEIGHT_ONLY_ROWS, Int8Weight, pack_weight
from ..onednn_rows import packed_linear
from ..quant.weights import StackedWeight
from ..wide_gemm import Float32Weight


class Linear(nn.Linear):
    """nn.Linear without the random init (every weight is overwritten by a loader).

    After `use_int8(max_rows)`, inputs of at most max_rows rows go through an
    int8 copy of the weight (see int8.py); after `use_wide(min_rows)`, inputs of
    at least min_rows rows go through a float32 copy (see wide_gemm.py); after
    `use_packed()`, other inputs use a oneDNN-prepacked copy (same values,
    faster GEMM); otherwise the weight. After `use_group(stack)` the weight is
    held only in its kernel format (quant/: GGUF blocks repacked, or --quantize) and
    `weight` is an empty tensor that keeps the run dtype; no other copy exists.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.int8: Int8Weight | None = None
        self.packed: torch.Tensor | None = None
        self.wide: Float32Weight | None = None
        self.group: StackedWeight | None = None
        self.few_rows: FewRows | None = None  # the int8/int4 weight-only path, looked up once

    def reset_parameters(self) -> None:
        pass

    def use_group(self, stack: StackedWeight) -> None:
        """Hold the weight as `stack` only (its shape must be [out_features, in_features])."""
        if tuple(stack.shape) != (self.out_features, self.in_features):
            raise KeyError(
                f"weight of shape {tuple(stack.shape)}, expected "
                f"{(self.out_features, self.in_features)}"
            )
        self.group = stack
        self.weight = drop_weight(self.weight)

    def use_int8(self, max_rows: int) -> None:
        self.int8 = Int8Weight(self.weight, max_rows)
        self.few_rows = FewRows(self.int8, self.bias)

    def use_int4(self) -> None:
        """After use_int8: 1-2 row inputs use an int4 copy of the weight (int4.py)."""
        if self.int8 is None:
            raise RuntimeError("use_int4 needs use_int8 first")
        self.int8.int4 = Int4Weight(self.weight)
        self.few_rows = FewRows(self.int8, self.bias)

    def use_packed(self, batch_hint: int) -> None:
        self.packed = pack_weight(self.weight, batch_hint)

    def use_wide(self, min_rows: int) -> None:
        self.wide = Float32Weight(self.weight, min_rows, self.bias)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)  # .to() / .float(): FewRows' tensors are replaced
        if self.int8 is not None:
            self.few_rows = FewRows(self.int8, self.bias)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        few = self.few_rows
        if few is not None and x.dim() == 2 and x.shape[0] <= few.rows and x.dtype == few.dtype:
            return few(x)
        if self.group is not None:
            out = self.group.matmul(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)
            return out if self.bias is None else out + self.bias
        int8 = self.int8
        if int8 is not None and int8.applies(x):
            return int8.matmul(x, self.bias)
        wide = self.wide
        if wide is not None and wide.applies(x):
            return wide.matmul(x)
        if self.packed is not None and x.dim() == 2:
            return packed_linear(x, self.packed, self.bias)
        return F.linear(x, self.weight, self.bias)


class FewRows:
    """Int8Weight.weight_only for a Linear, its tensors held as plain attributes.

    A decode step of one sequence calls ~120 linears; reaching the kernel through the
    modules (Linear -> Int8Weight -> Int4Weight, each attribute a Module.__getattr__)
    costs more Python than the call itself. Same kernel, same arguments, same result.
    """

    def __init__(self, int8: Int8Weight, bias: torch.Tensor | None) -> None:
        self.rows = min(int8.max_rows, WEIGHT_ONLY_ROWS)
        self.dtype = int8.scale.dtype
        self.bias = bias
        int4 = int8.int4
        if int4 is not None:  # the torch.* binding: no torch.ops overload resolution per call
            self.op = getattr(torch, "_weight_int4pack_mm_for_cpu", None) or (
                torch.ops.aten._weight_int4pack_mm_for_cpu
            )
            self.args = (int4.packed, GROUP, int4.scales_zeros)
        else:
            self.op = torch._weight_int8pack_mm
            self.args = (int8.qweight, int8.scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.op(x.contiguous(), *self.args)
        return out if self.bias is None else out + self.bias


def drop_weight(weight: torch.Tensor) -> nn.Parameter:
    """An empty parameter standing for a weight held elsewhere (same dtype and device)."""
    return nn.Parameter(weight.new_empty(0), requires_grad=False)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, normalised in float32 like transformers.

    plus_one=True is Gemma's variant: the float32 result times (1 + weight),
    then cast (the stored weight is the offset from 1).
    """

    def __init__(self, size: int, eps: float, plus_one: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size) if plus_one else torch.ones(size))
        self.eps = eps
        self.plus_one = plus_one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.plus_one:
            normed = _normalise(x.float(), self.eps)
            return (normed * (1.0 + self.weight.float())).to(x.dtype)
        fused = fused_cpu.rms_norm(x, self.weight, self.eps)
        if fused is not None:
            return fused
        return self.weight * _normalise(x.float(), self.eps).to(x.dtype)


def _normalise(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# HF `hidden_act` names -> function, as transformers' ACT2FN computes them
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu": F.relu,
}


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)) with gate and up fused as gate_up_proj = [gate; up] rows."""

    def __init__(self, hidden: int, intermediate: int, act: str, bias: bool = False) -> None:
        super().__init__()
        self.intermediate_size = intermediate
        self.act_name = act
        self.act = ACTIVATIONS[act]
        self.gate_up_proj = Linear(hidden, 2 * intermediate, bias=bias)
        self.down_proj = Linear(intermediate, hidden, bias=bias)

    def forward(self, x: torch.Tensor, step) -> torch.Tensor:
        gate_up = step.linear(self.gate_up_proj, x)
        hidden = fused_cpu.silu_mul(gate_up) if self.act_name == "silu" else None
        if hidden is None:
            gate, up = gate_up.split(self.intermediate_size, dim=-1)
            hidden = self.act(gate) * up
        return step.linear(self.down_proj, hidden)
