"""The CPU fast paths (prepacked weights, int8 linears) against the plain bf16 model.

Tolerances, as measured on SmolLM2-135M: prepacked weights compute the same
GEMM (logits within bf16 rounding); int8 linears (weight-only for 1-2 rows,
W8A8 above) stay within 5% of the logit range and keep the first greedy
token of these prompts.
"""

from __future__ import annotations

import copy

import pytest
import torch
from perf_greedy import greedy

from infer_worker.cpu_serving import ALL_ROWS, prepare_cpu_serving, serving_dtype
from infer_worker.int8 import quantize_rows

PROMPTS = [
    [1, 504, 3458, 282, 4649, 314, 216, 1345, 282, 9569, 30],
    [1, 19556, 28, 638, 457, 346, 47],
    [1, 504, 1345, 282, 3629, 7582, 314, 216, 5693, 28, 48, 29, 30, 3656, 253, 9569, 411, 563],
]


@pytest.fixture(scope="module")
def variants(bf16_bundle, cpp_kernel):
    plain = bf16_bundle.model
    packed = copy.deepcopy(plain)
    packed.use_packed()
    int8 = copy.deepcopy(plain)
    int8.use_packed()
    int8.use_int8(8)
    every = copy.deepcopy(plain)
    assert prepare_cpu_serving(every, torch.bfloat16, ALL_ROWS) == [
        "cpp-decode-attention",
        "int8-linears(all steps)",
    ]
    return plain, packed, int8, every


def test_quantize_rows_error_bound() -> None:
    weight = torch.randn(64, 96) * torch.linspace(0.01, 3, 64)[:, None]
    q, scale = quantize_rows(weight)
    assert q.dtype == torch.int8 and scale.shape == (64,)
    error = (q.float() * scale[:, None] - weight).abs()
    assert bool((error <= scale[:, None] / 2 + 1e-6).all())


def test_packed_linears_match_plain(bf16_bundle, variants) -> None:
    plain, packed, _, _ = variants
    want, want_logits = greedy_run(plain, bf16_bundle)
    got, got_logits = greedy_run(packed, bf16_bundle)
    assert got == want
    torch.testing.assert_close(got_logits, want_logits, atol=0.15, rtol=0.02)


@pytest.mark.parametrize("which", [2, 3], ids=["int8-up-to-8-rows", "int8-every-step"])
def test_int8_close_to_bf16(bf16_bundle, variants, which: int) -> None:
    plain, model = variants[0], variants[which]
    want, want_logits = greedy_run(plain, bf16_bundle)
    got, got_logits = greedy_run(model, bf16_bundle)
    spread = want_logits.max() - want_logits.min()
    assert (got_logits - want_logits).abs().max() < 0.05 * spread
    # later tokens may flip on near-ties (bf16 itself does against float32)
    assert [g[0] for g in got] == [w[0] for w in want]


def test_int8_every_step_makes_no_other_weight_copies(variants) -> None:
    """With int8 for every step the prepacked bf16 and float32 copies would never be used."""
    every = variants[3]
    linears = [m for m in every.modules() if hasattr(m, "int8") and m.int8 is not None]
    assert len(linears) == 4 * every.config.num_layers
    assert all(m.packed is None and m.wide is None for m in linears)
    assert every.logits_int8 is not None and every.logits_packed is None
    x = torch.randn(600, every.config.hidden_size).to(torch.bfloat16)  # a prefill-sized step
    assert every.layers[0].mlp.gate_up_proj.int8.applies(x)


def test_int8_only_below_the_row_limit(bf16_bundle, variants) -> None:
    """9 rows exceed the limit of 8: the int8 model computes exactly what the packed one does."""
    _, packed, int8, _ = variants
    x = torch.randn(9, bf16_bundle.config.hidden_size).to(torch.bfloat16)
    layer_packed = packed.layers[0].mlp.gate_up_proj
    layer_int8 = int8.layers[0].mlp.gate_up_proj
    assert torch.equal(layer_int8(x), layer_packed(x))
    assert not torch.equal(layer_int8(x[:8]), layer_packed(x[:8]))


def test_serving_defaults_leave_float32_alone(default_f32_model) -> None:
    assert serving_dtype("float32", torch.device("cpu")) == "float32"
    assert serving_dtype("auto", torch.device("cuda")) == "auto"
    enabled = prepare_cpu_serving(default_f32_model, torch.float32, int8_rows=8)
    assert enabled == ["cpp-decode-attention"]
    assert all(getattr(m, "int8", None) is None for m in default_f32_model.modules())


def test_serving_defaults_turn_on_bf16_paths(bf16_bundle) -> None:
    model = copy.deepcopy(bf16_bundle.model)
    enabled = prepare_cpu_serving(model, torch.bfloat16, int8_rows=4)
    assert "onednn-packed-linears" in enabled and "int8-weights(batch<=4)" in enabled
    assert model.layers[3].self_attn.qkv_proj.int8.max_rows == 4
    assert model.logits_int8 is not None


def greedy_run(model, bundle):
    return greedy(model, bundle, PROMPTS, steps=12)
