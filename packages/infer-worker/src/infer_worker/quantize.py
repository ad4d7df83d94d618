"""`--quantize int8|int4`: an HF checkpoint's linears re-held in a group format (one copy).

int8: symmetric 8-bit groups of 32 (Q8_0's grid); int4: asymmetric 4-bit groups of 32
(Q4_1's grid); both weight-only through quant/kernels.py. The grid is computed from the
weights as loaded (in the model's dtype: a float32 checkpoint served in bf16 is rounded
to bf16 first), so a float32 reference on the same grid quantizes those. Every Linear of
the loaded model (layer projections and an untied lm_head) is quantized and its dense
weight dropped; the embedding stays dense (a tied logits projection uses it). Refused, with
the reason named, for GGUF files (already quantized: served in their own formats), for
checkpoints with a `quantization_config`, off the CPU, and for a weight whose columns
are not a multiple of 32.
"""

from __future__ import annotations

import logging

import torch

from .errors import ModelLoadError
from .models import CausalLM
from .models.layers import Linear
from .quant.formats import quantize_int4, quantize_int8
from .quant.weights import StackedWeight

log = logging.getLogger("infer_worker")

QUANTIZE_CHOICES = ("int8", "int4")


def check_quantize(quantize: str, source: str, is_gguf: bool, raw_config: dict | None) -> None:
    """ModelLoadError naming why `--quantize quantize` cannot apply to this checkpoint."""
    if quantize not in QUANTIZE_CHOICES:
        raise ModelLoadError(quantize, f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}")
    if is_gguf:
        raise ModelLoadError(
            source, f"--quantize {quantize}: a GGUF file is quantized already (served as it is)"
        )
    if raw_config and raw_config.get("quantization_config"):
        method = raw_config["quantization_config"].get("quant_method", "?")
        raise ModelLoadError(
            source, f"--quantize {quantize}: the checkpoint is quantized already ({method})"
        )


def quantize_linears(model: CausalLM, quantize: str, device: torch.device, source: str) -> int:
    """Re-hold every Linear of model in the `quantize` format; returns how many."""
    if device.type != "cpu":
        raise ModelLoadError(source, f"--quantize {quantize}: CPU only (device {device})")
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, Linear)]
    for name, module in linears:
        if module.in_features % 32:
            raise ModelLoadError(
                source, f"--quantize {quantize}: {name} has {module.in_features} columns (not 32k)"
            )
    make = quantize_int8 if quantize == "int8" else quantize_int4
    for _, module in linears:
        module.use_group(StackedWeight([make(module.weight.detach())]))
    log.info("--quantize %s: %d linears held as %s groups of 32", quantize, len(linears), quantize)
    return len(linears)
