"""The engine CLI and the offline `LLM` load alike (loading.py): `--quantize` reaches the
loader (linears held in the group format, a GGUF file refused by name with exit 1), and
`LLM(dtype="auto")` gets the serving fast paths the engine would."""

from __future__ import annotations

import subprocess
import sys

from scheduler_process import EngineProcess

from infer_scheduler.llm import LLM


def test_engine_quantizes_its_linears(tiny_dir, tmp_path) -> None:
    endpoint = f"ipc://{tmp_path}/engine.ipc"
    args = ["--model", str(tiny_dir), "--endpoint", endpoint, "--dtype", "bfloat16"]
    engine = EngineProcess([*args, "--quantize", "int8", "--kv-cache-tokens", "256"])
    try:
        log = "".join(engine.lines)
        assert "--quantize int8:" in log and "linears held as int8 groups of 32" in log, log
    finally:
        assert engine.stop() == 0


def test_engine_refuses_quantize_on_a_gguf_file(tmp_path) -> None:
    cmd = [sys.executable, "-m", "infer_scheduler.cli", "--model", "smollm2"]
    cmd += ["--endpoint", f"ipc://{tmp_path}/e.ipc", "--quantize", "int8"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "--quantize int8: a GGUF file is quantized already" in done.stderr


def test_offline_llm_takes_quantize(tiny_dir) -> None:
    llm = LLM(str(tiny_dir), device="cpu", dtype="bfloat16", quantize="int8", kv_cache_tokens=256)
    assert llm.bundle.model.group_weights
    out = llm.generate([[5, 17, 99, 150, 3]], max_tokens=4, ignore_eos=True)
    assert len(out[0].outputs[0].token_ids) == 4


def test_offline_llm_loads_as_the_engine_does(tiny_dir) -> None:
    """dtype="auto" is the serving path (bf16 + fast paths on a bf16 CPU); float32 is exact."""
    from infer_worker.cpu_serving import cpu_has_bf16

    auto = LLM(str(tiny_dir), device="cpu", kv_cache_tokens=256)
    exact = LLM(str(tiny_dir), device="cpu", dtype="float32", kv_cache_tokens=256)
    assert str(exact.bundle.dtype) == "torch.float32"
    assert not any("int" in name for name in exact.fast_paths), exact.fast_paths
    if cpu_has_bf16():
        assert str(auto.bundle.dtype) == "torch.bfloat16"
        assert any("int8" in name for name in auto.fast_paths), auto.fast_paths
    else:
        assert str(auto.bundle.dtype) == "torch.float32"
    off = LLM(str(tiny_dir), device="cpu", dtype="bfloat16", int8_max_batch=0)
    assert not any("int8" in name for name in off.fast_paths), off.fast_paths
