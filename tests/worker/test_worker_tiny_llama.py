"""A tiny random-weight Llama written as a HF directory matches transformers' logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
from worker_paged import PagedRunner

from infer_worker import AttentionMetadata, load_model
from infer_worker.testing import write_tiny_llama

TOL = 1e-4


def hf_logits(directory: Path, ids: list[int]) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def our_logits_all(directory: Path, ids: list[int], chunk: int) -> torch.Tensor:
    """Logits of every position, computed through the paged cache in prefill chunks."""
    bundle = load_model(str(directory))
    runner = PagedRunner(bundle, num_blocks=64, block_size=8)
    tables = runner.tables([len(ids)])
    rows = []
    for start in range(0, len(ids), chunk):
        piece = ids[start : start + chunk]
        meta = AttentionMetadata.build(
            [len(piece)], [start + len(piece)], tables, runner.block_size
        )
        hidden = bundle.model(
            torch.tensor(piece), torch.arange(start, start + len(piece)), runner.cache, meta
        )
        rows.append(bundle.model.compute_logits(hidden))
    return torch.cat(rows)


PROMPT = list(range(100, 137)) + [1, 2, 3, 49151, 7, 7, 7]


def test_tiny_llama_gqa_untied_matches_transformers(tiny_dir: Path) -> None:
    bundle = load_model(str(tiny_dir))
    assert bundle.config.num_kv_heads == 2 and bundle.config.num_heads == 4
    assert not bundle.config.tie_word_embeddings
    assert bundle.served_name == "tiny-llama"
    assert bundle.config.eos_token_ids[0] == bundle.tokenizer.token_to_id("<|im_end|>")
    assert bundle.chat_template and "<|im_start|>" in bundle.chat_template
    expected = hf_logits(tiny_dir, PROMPT)
    for chunk in (len(PROMPT), 5, 1):  # one prefill, chunked prefill, pure decode
        ours = our_logits_all(tiny_dir, PROMPT, chunk)
        assert (ours - expected).abs().max().item() < TOL, f"chunk={chunk}"


def _rewrite_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def test_tied_embeddings_and_llama3_rope_scaling(tmp_path: Path) -> None:
    directory = write_tiny_llama(
        tmp_path / "tied", tie_word_embeddings=True, num_kv_heads=1, seed=3
    )
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    _rewrite_config(directory, rope_scaling=scaling, rope_theta=500000.0)
    bundle = load_model(str(directory))
    assert bundle.model.lm_head is None
    assert bundle.config.rope_scaling["rope_type"] == "llama3"
    expected = hf_logits(directory, PROMPT)
    ours = our_logits_all(directory, PROMPT, 7)
    assert (ours - expected).abs().max().item() < TOL


def test_transformers5_rope_parameters_and_sharded_weights(tmp_path: Path) -> None:
    directory = write_tiny_llama(tmp_path / "sharded", seed=5)
    _rewrite_config(
        directory,
        rope_theta=None,
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 20000.0},
    )
    weights = load_file(str(directory / "model.safetensors"))
    (directory / "model.safetensors").unlink()
    names = sorted(weights)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": names[:half],
        "model-00002-of-00002.safetensors": names[half:],
    }
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: weights[k] for k in keys}, str(directory / shard))
        weight_map.update(dict.fromkeys(keys, shard))
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    (directory / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    bundle = load_model(str(directory))
    assert bundle.config.rope_theta == 20000.0
    assert bundle.config.rope_scaling == {"rope_type": "linear", "factor": 2.0}
    assert bundle.chat_template == "{{ messages[0]['content'] }}"
    expected = hf_logits(directory, PROMPT)
    ours = our_logits_all(directory, PROMPT, 16)
    assert (ours - expected).abs().max().item() < TOL


def test_qwen2_attention_bias(tmp_path: Path) -> None:
    directory = write_tiny_llama(tmp_path / "qwen", seed=7)
    _rewrite_config(directory, architectures=["Qwen2ForCausalLM"], model_type="qwen2")
    weights = load_file(str(directory / "model.safetensors"))
    gen = torch.Generator().manual_seed(11)
    for name in list(weights):
        for proj in ("q_proj", "k_proj", "v_proj"):
            if name.endswith(f"{proj}.weight"):
                rows = weights[name].shape[0]
                weights[name.replace("weight", "bias")] = torch.randn(rows, generator=gen) * 0.5
    save_file(weights, str(directory / "model.safetensors"))
    bundle = load_model(str(directory))
    assert bundle.config.attention_bias
    expected = hf_logits(directory, PROMPT)
    ours = our_logits_all(directory, PROMPT, 9)
    assert (ours - expected).abs().max().item() < TOL


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_runs_close_to_float32(tiny_dir: Path, dtype: str) -> None:
    bundle = load_model(str(tiny_dir), dtype=dtype)
    assert bundle.dtype == getattr(torch, dtype)
    assert next(bundle.model.parameters()).dtype == bundle.dtype
    runner = PagedRunner(bundle, num_blocks=16, block_size=8)
    tables = runner.tables([len(PROMPT)])
    logits = runner.step([PROMPT], [0], tables)
    assert logits.dtype == torch.float32
    reference = hf_logits(tiny_dir, PROMPT)[-1]
    assert torch.isfinite(logits).all()
    assert (logits[0] - reference).abs().max().item() < 0.1 * reference.abs().max().item()


def test_measure_command_reports_speed(tiny_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from infer_worker.measure import main

    main([str(tiny_dir), "--prompt-tokens", "20", "--decode-tokens", "5", "--block-size", "4"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["model"] == "tiny-llama" and report["decode_tokens"] == 5
    assert report["decode_tokens_per_s"] > 0 and report["load_s"] > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_cuda_model_matches_cpu(tiny_dir: Path, dtype: str) -> None:
    cpu = our_logits_all(tiny_dir, PROMPT, 6)
    bundle = load_model(str(tiny_dir), device="cuda", dtype=dtype)
    runner = PagedRunner(bundle, num_blocks=64, block_size=8)
    tables = runner.tables([len(PROMPT)])
    first = runner.step([PROMPT[:30]], [0], tables)
    assert first.is_cuda and first.dtype == torch.float32
    logits = runner.step([PROMPT[30:]], [30], tables)[0].cpu()
    tol = 1e-3 if dtype == "float32" else 0.1 * cpu.abs().max().item()
    assert (logits - cpu[-1]).abs().max().item() < tol
