"""--quantize int8|int4 on an HF checkpoint: one copy of every linear in a group format,
greedy tokens that agree with the float32 model, refusals that name the problem."""

from __future__ import annotations

import json

import pytest
import torch
from worker_paged import PagedRunner

from infer_scheduler.engine import Engine
from infer_scheduler.llm import LLM
from infer_scheduler.options import EngineOptions
from infer_worker import AttentionMetadata, load_model
from infer_worker.errors import ModelLoadError
from infer_worker.models.layers import Linear
from infer_worker.quant.formats import quantize_int4, quantize_int8
from infer_worker.testing import write_tiny_llama


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama(
        tmp_path_factory.mktemp("q") / "m", hidden_size=128, intermediate_size=256, seed=3
    )


def _picks(bundle, sequence: list[int]) -> torch.Tensor:
    runner = PagedRunner(bundle, num_blocks=40)
    tables = runner.tables([len(sequence)])
    meta = AttentionMetadata.build([len(sequence)], [len(sequence)], tables, 16, bundle.device)
    n = len(sequence)
    hidden = bundle.model(torch.tensor(sequence), torch.arange(n), runner.cache, meta)
    return bundle.model.compute_logits(hidden).argmax(-1)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quantized_linears_are_one_copy_and_agree(tiny, kind: str) -> None:
    dense = load_model(str(tiny), device="cpu", dtype="bfloat16")
    quant = load_model(str(tiny), device="cpu", dtype="bfloat16", quantize=kind)
    linears = {n: m for n, m in quant.model.named_modules() if isinstance(m, Linear)}
    assert linears and all(m.group is not None and m.weight.numel() == 0 for m in linears.values())
    dense_linear = sum(m.weight.nbytes for m in dense.model.modules() if isinstance(m, Linear))
    held = sum(m.group.nbytes() for m in linears.values())
    # int8: 1 + 4/32 bytes per weight, int4: 0.5 + 8/32, against bf16's 2
    assert held == pytest.approx(dense_linear / 2 * (1.125 if kind == "int8" else 0.75))
    # the float32 model on the served grid: what the group-format model must compute. The
    # grid is the one of the weights as loaded (bf16 here); the float32 checkpoint's own
    # int4 grid differs by 2.6% of the weights' norm (int8: 0.5%), and a reference on it
    # agreed only 79% (int8: 94%): the gap was the reference, not the kernels
    reference = load_model(str(tiny), device="cpu", dtype="float32")
    make = quantize_int8 if kind == "int8" else quantize_int4
    with torch.no_grad():
        for name, m in reference.model.named_modules():
            if isinstance(m, Linear):
                grid = linears[name].group.parts[0].dequantize()
                assert torch.equal(grid, make(m.weight.bfloat16()).dequantize())
                m.weight.copy_(grid)
    sequence = torch.randint(0, 200, (256,), generator=torch.Generator().manual_seed(1)).tolist()
    want = _picks(reference, sequence)
    agreement = (want == _picks(quant, sequence)).float().mean().item()
    plain = load_model(str(tiny), device="cpu", dtype="float32")
    bf16 = (_picks(plain, sequence) == _picks(dense, sequence)).float().mean().item()
    # bf16 activations alone flip some near-ties of this random model (the dense bf16
    # model against float32: 96.5%); the group formats cost no more (int8 96.9%, int4
    # 96.5% on an AMD EPYC with AVX-512)
    assert agreement >= bf16 - 0.02, (kind, agreement, bf16)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_engine_serves_the_quantized_model(tiny, kind: str) -> None:
    ref = LLM(str(tiny), device="cpu", dtype="float32", kv_cache_tokens=512)
    served = LLM(str(tiny), device="cpu", dtype="bfloat16", kv_cache_tokens=512)
    bundle = load_model(str(tiny), device="cpu", dtype="bfloat16", quantize=kind)
    served.bundle = bundle
    served.engine = Engine(bundle, EngineOptions(kv_cache_tokens=512))
    prompts = [[5, 17, 99, 150, 3], [1, 2, 3, 4, 5, 6, 7, 8]]
    want = ref.generate(prompts, max_tokens=6, ignore_eos=True)
    got = served.generate(prompts, max_tokens=6, ignore_eos=True)
    assert served.engine.bundle.model.group_weights
    for w, g in zip(want, got, strict=True):
        assert len(g.outputs[0].token_ids) == 6
        assert g.outputs[0].token_ids[0] == w.outputs[0].token_ids[0]


def test_quantize_is_refused_where_it_cannot_apply(tiny, tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="--quantize int8: a GGUF file is quantized already"):
        load_model("smollm2", device="cpu", dtype="bfloat16", quantize="int8")
    with pytest.raises(ModelLoadError, match="--quantize int4: a GGUF file is quantized already"):
        load_model("smollm2", device="cpu", dtype="bfloat16", quantize="int4")
    with pytest.raises(ModelLoadError, match="--quantize must be one of"):
        load_model(str(tiny), device="cpu", quantize="int3")
    quantized = tmp_path / "awq"
    quantized.mkdir()
    for f in tiny.iterdir():
        (quantized / f.name).write_bytes(f.read_bytes())
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"quantized already \(awq\)"):
        load_model(str(quantized), device="cpu", quantize="int8")
