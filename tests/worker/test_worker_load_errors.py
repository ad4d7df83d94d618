"""Every bad model path or file gives one ModelLoadError naming the file and the problem."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter
from safetensors.torch import load_file, save_file
from test_worker_gguf_file import write_gguf

from infer_worker import ModelLoadError, load_model
from infer_worker.loader import default_gguf_path
from infer_worker.testing import write_tiny_llama


@pytest.fixture
def tiny_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_dir, tmp_path / "copy"))


def expect_error(model: str, *words: str, **kwargs) -> ModelLoadError:
    with pytest.raises(ModelLoadError) as info:
        load_model(model, **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, message
    return info.value


def test_missing_path(tmp_path: Path) -> None:
    expect_error(str(tmp_path / "nope.gguf"), "nope.gguf", "no such file")


def test_not_a_model_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    expect_error(str(path), "notes.txt", "not a .gguf file")


def test_garbage_and_truncated_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    expect_error(str(bad), "bad.gguf", "not a readable GGUF")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(default_gguf_path().read_bytes()[:100_000])
    expect_error(str(cut), "cut.gguf", "GGUF")
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    expect_error(str(empty), "empty.gguf")


def _write_gguf(path: Path, arch: str, tensors: dict[str, tuple[np.ndarray, T | None]]) -> None:
    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    for name, (data, raw) in tensors.items():
        writer.add_tensor(name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_unsupported_architecture(tmp_path: Path) -> None:
    path = tmp_path / "bert.gguf"
    _write_gguf(path, "bert", {"token_embd.weight": (np.zeros((4, 8), np.float32), None)})
    expect_error(str(path), "bert.gguf", "unsupported architecture 'bert'")


def test_gguf_without_tokenizer_metadata(tmp_path: Path) -> None:
    path = tmp_path / "notok.gguf"
    _write_gguf(path, "llama", {"token_embd.weight": (np.zeros((4, 32), np.float32), None)})
    expect_error(str(path), "notok.gguf", "unsupported GGUF tokenizer model None")


def test_gguf_unknown_tensor_type_id(tmp_path: Path) -> None:
    hf = write_tiny_llama(tmp_path / "hf", hidden_size=256, intermediate_size=256, num_layers=1)
    path = tmp_path / "odd.gguf"
    write_gguf(path, hf, [T.F32])
    data = bytearray(path.read_bytes())
    name = b"blk.0.ffn_up.weight"
    at = data.index(name) + len(name)
    dims = int.from_bytes(data[at : at + 4], "little")
    type_at = at + 4 + 8 * dims
    assert int.from_bytes(data[type_at : type_at + 4], "little") == T.F32
    data[type_at : type_at + 4] = (250).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    expect_error(str(path), "odd.gguf", "blk.0.ffn_up.weight", "unknown type id 250")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_gguf_known_but_unsupported_type(tmp_path: Path) -> None:
    hf = write_tiny_llama(tmp_path / "hf", hidden_size=256, intermediate_size=256, num_layers=1)
    path = tmp_path / "q8k.gguf"
    write_gguf(path, hf, [T.F32, T.Q8_K])
    expect_error(str(path), "q8k.gguf", "unsupported type Q8_K")


def test_hf_missing_config(tiny_copy: Path) -> None:
    (tiny_copy / "config.json").unlink()
    expect_error(str(tiny_copy), "config.json", "missing")


def test_hf_invalid_config_json(tiny_copy: Path) -> None:
    (tiny_copy / "config.json").write_text("{not json")
    expect_error(str(tiny_copy), "config.json", "invalid JSON")


def test_hf_config_lacks_key(tiny_copy: Path) -> None:
    config = json.loads((tiny_copy / "config.json").read_text())
    del config["hidden_size"]
    (tiny_copy / "config.json").write_text(json.dumps(config))
    expect_error(str(tiny_copy), "config.json", "hidden_size")


def test_hf_unsupported_architecture(tiny_copy: Path) -> None:
    config = json.loads((tiny_copy / "config.json").read_text())
    config.update(architectures=["GPT2LMHeadModel"], model_type="gpt2")
    (tiny_copy / "config.json").write_text(json.dumps(config))
    expect_error(str(tiny_copy), "config.json", "unsupported architecture")


def test_hf_unsupported_rope_scaling(tiny_copy: Path) -> None:
    config = json.loads((tiny_copy / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "mrope", "mrope_section": [2, 2]}
    (tiny_copy / "config.json").write_text(json.dumps(config))
    expect_error(str(tiny_copy), "config.json", "mrope")


def test_hf_rope_scaling_without_factor(tiny_copy: Path) -> None:
    config = json.loads((tiny_copy / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "llama3", "low_freq_factor": 1.0}
    (tiny_copy / "config.json").write_text(json.dumps(config))
    expect_error(str(tiny_copy), "config.json", "factor")


def test_hf_config_wrong_value_type(tiny_copy: Path) -> None:
    config = json.loads((tiny_copy / "config.json").read_text())
    config["num_hidden_layers"] = "many"
    (tiny_copy / "config.json").write_text(json.dumps(config))
    expect_error(str(tiny_copy), "config.json", "malformed")


def test_hf_missing_tokenizer(tiny_copy: Path) -> None:
    (tiny_copy / "tokenizer.json").unlink()
    expect_error(str(tiny_copy), "tokenizer.json", "missing")


def test_hf_broken_tokenizer(tiny_copy: Path) -> None:
    (tiny_copy / "tokenizer.json").write_text('{"model": 3}')
    expect_error(str(tiny_copy), "tokenizer.json", "cannot parse")


def test_hf_missing_weights(tiny_copy: Path) -> None:
    (tiny_copy / "model.safetensors").unlink()
    expect_error(str(tiny_copy), "no *.safetensors")


def test_hf_index_names_missing_shard(tiny_copy: Path) -> None:
    (tiny_copy / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "model-00002.safetensors"}})
    )
    expect_error(str(tiny_copy), "model-00002.safetensors", "missing")


def test_hf_corrupt_safetensors(tiny_copy: Path) -> None:
    (tiny_copy / "model.safetensors").write_bytes(b"\x00" * 64)
    expect_error(str(tiny_copy), "model.safetensors", "cannot read safetensors")


def test_hf_weight_missing_or_misshapen(tiny_copy: Path) -> None:
    weights = load_file(str(tiny_copy / "model.safetensors"))
    del weights["model.layers.1.mlp.down_proj.weight"]
    save_file(weights, str(tiny_copy / "model.safetensors"))
    expect_error(str(tiny_copy), "copy", "missing weights", "layers.1.mlp.down_proj")
    weights["model.layers.1.mlp.down_proj.weight"] = torch.zeros(3, 3)
    save_file(weights, str(tiny_copy / "model.safetensors"))
    expect_error(str(tiny_copy), "down_proj", "shape")


def test_bad_dtype_and_device(tiny_dir: Path) -> None:
    expect_error(str(tiny_dir), "float8", "unsupported dtype", dtype="float8")
    expect_error(str(tiny_dir), "tpu9", "invalid device", device="tpu9")
    if not torch.cuda.is_available():
        expect_error(str(tiny_dir), "CUDA", device="cuda")


def test_auto_device_and_dtype(tiny_dir: Path) -> None:
    bundle = load_model(str(tiny_dir), device="auto", dtype="auto")
    if torch.cuda.is_available():
        assert bundle.device.type == "cuda" and bundle.dtype == torch.bfloat16
    else:
        assert bundle.device.type == "cpu" and bundle.dtype == torch.float32


def test_loading_logs_each_stage(tiny_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="infer_worker"):
        load_model(str(tiny_dir))
    messages = [r.getMessage() for r in caplog.records if r.name == "infer_worker"]
    assert any(m.startswith("reading") for m in messages)
    assert any(m.startswith("config") for m in messages)
    assert any(m.startswith("weights loaded") for m in messages)
