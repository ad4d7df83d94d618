"""Int4 weights for 1-2 row decode steps (int4.py): Q4_1's grid recovered, the error bound,
the matmul, and when the engine turns them on."""

from __future__ import annotations

import copy

import pytest
import torch
from perf_greedy import greedy

from infer_worker.cpu_serving import ALL_ROWS, int4_wanted, prepare_cpu_serving
from infer_worker.int4 import GROUP, Int4Weight, quantize_groups


def _q4_1_weight(rows: int = 48, cols: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """A bf16 weight on Q4_1's grid (d * q + m per group of 32, q = 0 and 15 in every group)."""
    gen = torch.Generator().manual_seed(3)
    q = torch.randint(0, 16, (rows, cols // GROUP, GROUP), generator=gen)
    q[..., 0], q[..., 1] = 0, 15
    d = torch.rand(rows, cols // GROUP, 1, generator=gen) * 0.02 + 0.001
    m = -torch.rand(rows, cols // GROUP, 1, generator=gen) * 0.1
    return (d * q + m).reshape(rows, cols).to(torch.bfloat16), q.reshape(rows, cols)


def test_q4_1_grid_is_recovered() -> None:
    """Weights loaded from Q4_1 (then rounded to bf16) requantize to the file's own q."""
    weight, q = _q4_1_weight()
    got, scale, zero = quantize_groups(weight)
    assert torch.equal(got, q.to(torch.int32))
    dequantized = Int4Weight(weight).dequantized()
    # only the bf16 rounding of the stored (scale, zero) pairs is left
    assert (dequantized - weight.float()).abs().max() <= 2**-7 * weight.float().abs().max()


def test_error_bound_on_any_weight() -> None:
    weight = torch.randn(40, 96) * torch.linspace(0.01, 2, 40)[:, None]
    q, scale, zero = quantize_groups(weight)
    assert int(q.min()) >= 0 and int(q.max()) <= 15
    groups = weight.reshape(40, -1, GROUP)
    back = (q.reshape(40, -1, GROUP).float() - 8) * scale[..., None] + zero[..., None]
    assert bool(((back - groups).abs() <= scale[..., None] / 2 + 1e-6).all())


@pytest.mark.parametrize("rows", [1, 2])
def test_matmul_is_the_product_with_the_dequantized_weight(rows: int) -> None:
    weight, _ = _q4_1_weight()
    int4 = Int4Weight(weight)
    x = torch.randn(rows, weight.shape[1]).to(torch.bfloat16)
    want = x.float() @ int4.dequantized().t()
    torch.testing.assert_close(int4.matmul(x).float(), want, rtol=2e-2, atol=2e-2)


def test_auto_means_q4_1_sources_only(bf16_bundle) -> None:
    assert bf16_bundle.linear_qtype == "Q4_1"  # the default model's GGUF
    assert int4_wanted("auto", "Q4_1") and not int4_wanted("auto", "Q8_0")
    assert not int4_wanted("auto", None) and int4_wanted("on", None)
    assert not int4_wanted("off", "Q4_1")


def test_default_model_with_int4_keeps_bf16_tokens(bf16_bundle, cpp_kernel) -> None:
    """int4 for 1-2 rows on the Q4_1 default model: the greedy run of one prompt (every
    decode step 1 row) starts like bf16's and its first logits stay within 5% of the range."""
    model = copy.deepcopy(bf16_bundle.model)
    enabled = prepare_cpu_serving(model, torch.bfloat16, ALL_ROWS, int4=True)
    assert enabled[-1] == "int4-weights(1-2 token steps)"
    assert model.layers[0].mlp.down_proj.int8.int4 is not None
    prompt = [[1, 504, 3458, 282, 4649, 314, 216, 1345, 282, 9569, 30]]
    want, want_logits = greedy(bf16_bundle.model, bf16_bundle, prompt, steps=8)
    got, got_logits = greedy(model, bf16_bundle, prompt, steps=8)
    spread = want_logits.max() - want_logits.min()
    assert (got_logits - want_logits).abs().max() < 0.05 * spread
    assert got[0][:3] == want[0][:3]
    # a 1-row input really goes through the int4 copy, close to the bf16 weight's product
    linear = model.layers[5].mlp.gate_up_proj
    x = torch.randn(1, linear.in_features).to(torch.bfloat16)
    out = linear(x)
    assert torch.equal(out, linear.int8.int4.matmul(x))
    want_out = torch.nn.functional.linear(x, bf16_bundle.model.layers[5].mlp.gate_up_proj.weight)
    assert (out.float() - want_out.float()).abs().max() < 0.02 * want_out.float().abs().max()
