"""Float32 GEMMs for prefill-sized bf16 steps (wide_gemm.py) against the bf16 model.

They compute the same products with one rounding (at the output) instead of
bf16 arithmetic, so logits stay within bf16 noise of the packed bf16 model
and the greedy tokens of these prompts do not change.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from perf_greedy import greedy

from infer_worker import load_model
from infer_worker.cpu_serving import prepare_cpu_serving
from infer_worker.testing import write_tiny_llama
from infer_worker.wide_gemm import Float32Weight, cpu_has_amx

# two prompts of 70+ tokens: their prefills are wide enough for the float32 path
BASE = [504, 3458, 282, 4649, 314, 216, 1345, 282, 9569, 30, 19556, 28, 638, 457, 346, 47]
PROMPTS = [[1, *(BASE * 5)[i : i + 70]] for i in (0, 7)]


@pytest.fixture(scope="module")
def packed_and_wide(bf16_bundle, cpp_kernel):
    packed = copy.deepcopy(bf16_bundle.model)
    packed.use_packed()
    wide = copy.deepcopy(bf16_bundle.model)
    wide.use_packed()
    wide.use_wide(64)
    return packed, wide


def test_float32_weight_is_the_float32_product() -> None:
    weight = (torch.randn(96, 48) * 0.1).to(torch.bfloat16)
    bias = torch.randn(96).to(torch.bfloat16)
    wide = Float32Weight(weight, 4, bias)
    x = torch.randn(5, 48).to(torch.bfloat16)
    want = F.linear(x.float(), weight.float(), bias.float()).to(torch.bfloat16)
    torch.testing.assert_close(wide.matmul(x), want, atol=1e-2, rtol=1e-2)
    assert wide.matmul(x).dtype == torch.bfloat16


def test_float32_weight_applies_only_to_wide_bf16_inputs() -> None:
    wide = Float32Weight(torch.randn(8, 16).to(torch.bfloat16), 64, None)
    assert wide.applies(torch.zeros(64, 16, dtype=torch.bfloat16))
    assert not wide.applies(torch.zeros(63, 16, dtype=torch.bfloat16))
    assert not wide.applies(torch.zeros(64, 16, dtype=torch.float32))


def test_wide_prefill_keeps_greedy_tokens(bf16_bundle, packed_and_wide) -> None:
    packed, wide = packed_and_wide
    want, want_logits = greedy(packed, bf16_bundle, PROMPTS, steps=1)
    got, got_logits = greedy(wide, bf16_bundle, PROMPTS, steps=1)
    spread = want_logits.max() - want_logits.min()
    assert (got_logits - want_logits).abs().max() < 0.03 * spread
    assert [g[0] for g in got] == [w[0] for w in want]


def test_wide_path_is_used_from_the_row_limit(bf16_bundle, packed_and_wide) -> None:
    packed, wide = packed_and_wide
    x = torch.randn(64, bf16_bundle.config.hidden_size).to(torch.bfloat16)
    layer_packed, layer_wide = packed.layers[0].mlp.gate_up_proj, wide.layers[0].mlp.gate_up_proj
    assert torch.equal(layer_wide(x[:63]), layer_packed(x[:63]))
    assert not torch.equal(layer_wide(x), layer_packed(x))


def test_serving_defaults_turn_on_and_off_the_wide_path(tmp_path) -> None:
    tiny = str(write_tiny_llama(tmp_path / "tiny"))
    model = load_model(tiny, device="cpu", dtype="bfloat16").model
    enabled = prepare_cpu_serving(model, torch.bfloat16, int8_rows=4)
    if cpu_has_amx():  # bf16 GEMMs are the fast ones there
        assert model.layers[0].mlp.down_proj.wide is None
        return
    assert "float32-gemm(batch>=64)" in enabled
    assert model.layers[0].mlp.down_proj.wide.min_rows == 64
    plain = load_model(tiny, device="cpu", dtype="bfloat16").model
    enabled = prepare_cpu_serving(plain, torch.bfloat16, int8_rows=4, wide_rows=0)
    assert not any(name.startswith("float32-gemm") for name in enabled)
    assert plain.layers[0].mlp.down_proj.wide is None
