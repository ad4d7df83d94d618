"""Speed of the engine on one CUDA GPU vs transformers' `generate`, same card, same call.

A Llama-3-8B-shaped model (32 layers, hidden 4096, 32/8 heads, vocab 128256)
with random bf16 weights is built directly on the GPU by transformers
(N(0, 0.02), nothing written to disk); the engine's model copies those
weights (`infer_worker.testing.random_bundle`), so both sides compute the
same function. Workload: B prompts of P random token ids, exactly G greedy
new tokens each (eos ignored), all submitted at once (offline).

    python3 benchmarks/gpu_bench.py --out bench.json            # on the GPU machine
    python3 benchmarks/gpu_bench.py --smoke --out /tmp/b.json   # tiny model, any device

Reported per batch size, for the engine with CUDA graphs (default) and
without (eager), and for transformers: output tokens/s (B*G over the wall
time of the whole run, prefill included) and the median decode step. Also:
last-token logits of both bf16 models against transformers in float32, the
paged attention kernel against the torch path at the 8B head layout, and
the device-to-device copy bandwidth (the floor of a batch-1 decode step is
weight bytes / bandwidth). Sections that fail are recorded and skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

LLAMA3_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_layers=32,
    num_heads=32,
    num_kv_heads=8,
    head_dim=128,
    rope_theta=500000.0,
    context_length=8192,
)
SMOKE = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    rope_theta=10000.0,
    context_length=512,
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_models(shape: dict, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """(transformers LlamaForCausalLM, our ModelBundle) with the same random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from infer_worker.config import ModelConfig
    from infer_worker.testing import random_bundle

    hf_config = LlamaConfig(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"],
        num_key_value_heads=shape["num_kv_heads"],
        head_dim=shape["head_dim"],
        rope_theta=shape["rope_theta"],
        max_position_embeddings=shape["context_length"],
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
        initializer_range=0.02,
    )
    hf_config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            hf = LlamaForCausalLM(hf_config)
    finally:
        torch.set_default_dtype(before)
    # no .to(dtype): it would round the float32 rotary inv_freq buffer to bf16 (an error of up
    # to 0.2 rad in the rotary angles at position 128), which transformers itself never does
    hf = hf.eval()
    if hf.model.rotary_emb.inv_freq.dtype != torch.float32:
        raise RuntimeError("transformers built its rotary inv_freq in a dtype other than float32")
    config = ModelConfig(**shape, rms_norm_eps=1e-5, eos_token_ids=[])
    bundle = random_bundle(config, device, dtype, hf.state_dict().items())
    return hf, bundle


def prompts_for(batch: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    low = min(1000, vocab // 4)
    return torch.randint(low, vocab, (batch, length), generator=gen).tolist()


def run_engine(engine: Any, prompts: list[list[int]], new: int, max_s: float) -> dict:
    """Submit every prompt at once and step until done; stop early after max_s seconds."""
    from infer_protocol import GenerateRequest, SamplingParams

    tag = f"r{time.monotonic_ns()}"
    ids = [f"{tag}-{i}" for i in range(len(prompts))]
    for rid, prompt in zip(ids, prompts, strict=True):
        engine.add_request(
            GenerateRequest(
                request_id=rid,
                input_ids=prompt,
                sampling=SamplingParams(temperature=0.0),
                max_tokens=new,
                ignore_eos=True,
            ),
            enforce_capacity=False,
        )
    tokens: dict[str, list[int]] = {rid: [] for rid in ids}
    steps: list[float] = []
    partial = False
    start = time.perf_counter()
    while engine.has_work:
        t = time.perf_counter()
        for delta in engine.step():
            tokens[delta.request_id].extend(delta.token_ids)
        steps.append(time.perf_counter() - t)
        if time.perf_counter() - start > max_s:
            engine.abort_all()
            partial = True
            break
    wall = time.perf_counter() - start
    produced = sum(len(t) for t in tokens.values())
    decode = steps[-(new - 2) :] if len(steps) > new else steps[1:]
    return {
        "batch": len(prompts),
        "wall_s": round(wall, 3),
        "output_tokens": produced,
        "output_tok_per_s": round(produced / wall, 1),
        "steps": len(steps),
        "decode_step_ms_median": round(1000 * statistics.median(decode), 2) if decode else None,
        "partial": partial,
        "tokens": [tokens[rid] for rid in ids],
    }


def run_hf(hf: Any, prompts: list[list[int]], new: int, device: torch.device) -> dict:
    """Static-batch greedy `generate` (equal-length prompts, no padding)."""
    ids = torch.tensor(prompts, device=device)
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )
    sync(device)
    wall = time.perf_counter() - start
    produced = (out.shape[1] - ids.shape[1]) * ids.shape[0]
    return {
        "batch": len(prompts),
        "wall_s": round(wall, 3),
        "output_tokens": int(produced),
        "output_tok_per_s": round(produced / wall, 1),
        "tokens": out[:, ids.shape[1] :].tolist(),
    }


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> dict:
    """Greedy agreement: first tokens equal, and the mean common prefix length."""
    firsts = sum(a[:1] == b[:1] for a, b in zip(ours, theirs, strict=True))
    prefix = []
    for a, b in zip(ours, theirs, strict=True):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        prefix.append(n)
    return {
        "first_token_equal": f"{firsts}/{len(ours)}",
        "mean_common_prefix": statistics.mean(prefix),
    }


def section(results: dict, name: str, fn: Callable[[], Any]) -> Any:
    log(f"{name} ...")
    try:
        value = fn()
    except Exception as exc:  # a failed section is recorded; the others still run
        traceback.print_exc()
        results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"[:500]
        return None
    results[name] = value
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="JSON file for the results")
    parser.add_argument("--batches", default="1,32,128")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--max-run-s", type=float, default=30.0, help="cap per engine run")
    parser.add_argument("--smoke", action="store_true", help="tiny model (check the script)")
    args = parser.parse_args(argv)

    from infer_scheduler.engine import Engine
    from infer_scheduler.options import EngineOptions

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16
    shape = SMOKE if args.smoke else LLAMA3_8B
    batches = [int(b) for b in args.batches.split(",")]
    P, G = args.prompt_len, args.new_tokens
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "shape": shape,
        "dtype": str(dtype),
        "prompt_len": P,
        "new_tokens": G,
    }
    try:
        import transformers
        import triton

        results["transformers"] = transformers.__version__
        results["triton"] = triton.__version__
    except ImportError:
        pass
    log(f"device {results['device']}, torch {torch.__version__}")
    if device.type == "cuda":
        from gpu_checks import attention_kernel, copy_bandwidth

        section(results, "copy_GBps", lambda: copy_bandwidth(device))
        section(results, "attention", lambda: attention_kernel(device, 128, P + G))

    t = time.perf_counter()
    built = section(results, "build", lambda: build_models(shape, device, dtype))
    if built is None:
        write(args.out, results)
        return 1
    hf, bundle = built
    results["build"] = {"s": round(time.perf_counter() - t, 1)}
    weight_bytes = sum(p.numel() * p.element_size() for p in bundle.model.parameters())
    results["weight_GB"] = round(weight_bytes / 1e9, 2)
    vocab = shape["vocab_size"]

    ours: dict[int, dict] = {}  # graph runs, for the agreement with transformers
    for graphs in (True, False):
        options = EngineOptions(
            kv_cache_tokens=max(batches) * (P + G) + 1024,
            max_running=max(batches),
            enable_prefix_cache=False,
            cuda_graphs=graphs,
        )
        engine = Engine(bundle, options)
        mode = "engine" if graphs else "engine_eager"
        t = time.perf_counter()
        for b in batches:  # compiles kernels and captures the graphs of these batch sizes
            section(
                results,
                f"{mode}_warmup_b{b}",
                lambda b=b, e=engine: _short(run_engine(e, prompts_for(b, P, vocab, 7), 3, 30)),
            )
        results[f"{mode}_warmup_s"] = round(time.perf_counter() - t, 1)
        for b in batches:
            run = section(
                results,
                f"{mode}_b{b}",
                lambda b=b, e=engine: run_engine(e, prompts_for(b, P, vocab, b), G, args.max_run_s),
            )
            if graphs and run is not None:
                ours[b] = run
        del engine
        if device.type == "cuda":
            torch.cuda.empty_cache()

    theirs: dict[int, dict] = {}
    section(
        results, "hf_warmup", lambda: _short(run_hf(hf, prompts_for(2, P, vocab, 9), 8, device))
    )
    section(
        results, "hf_prefill_b1", lambda: _short(run_hf(hf, prompts_for(1, P, vocab, 1), 1, device))
    )
    for b in batches:
        section(
            results,
            f"hf_b{b}",
            lambda b=b: theirs.setdefault(b, run_hf(hf, prompts_for(b, P, vocab, b), G, device)),
        )
    if 1 in theirs and "hf_prefill_b1" in results:
        results["hf_decode_step_ms_b1"] = round(
            1000 * (theirs[1]["wall_s"] - results["hf_prefill_b1"]["wall_s"]) / (G - 1), 2
        )
    for b in batches:
        if b in ours and b in theirs:
            results[f"agreement_b{b}"] = agreement(ours[b]["tokens"], theirs[b]["tokens"])
    for key in list(results):
        if isinstance(results[key], dict):
            results[key].pop("tokens", None)
    from gpu_checks import logits_check

    section(
        results, "logits_vs_fp32", lambda: logits_check(hf, bundle, prompts_for(8, P, vocab, 3))
    )
    if device.type == "cuda":
        results["max_memory_GB"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 1)
    write(args.out, results)
    print_table(results, batches)
    return 0 if "errors" not in results else 1


def _short(run: dict) -> dict:
    run.pop("tokens", None)
    return run


def write(path: str, results: dict) -> None:
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1, default=str)


def print_table(results: dict, batches: list[int]) -> None:
    print(
        f"\n{results['device']} | bf16 | prompt {results['prompt_len']} | new {results['new_tokens']}"
    )
    print(
        "batch | engine tok/s (graphs / eager) | decode step ms (graphs / eager) | "
        "transformers tok/s | first tokens equal"
    )
    for b in batches:
        ours = results.get(f"engine_b{b}") or {}
        eager = results.get(f"engine_eager_b{b}") or {}
        theirs = results.get(f"hf_b{b}") or {}
        agree = results.get(f"agreement_b{b}") or {}
        print(
            f"{b} | {ours.get('output_tok_per_s')} / {eager.get('output_tok_per_s')} | "
            f"{ours.get('decode_step_ms_median')} / {eager.get('decode_step_ms_median')} | "
            f"{theirs.get('output_tok_per_s')} | {agree.get('first_token_equal')}"
        )
    print(f"transformers decode step ms at batch 1: {results.get('hf_decode_step_ms_b1')}")
    print(
        f"weights {results.get('weight_GB')} GB; copy {results.get('copy_GBps')} GB/s; "
        f"warm-up with capture {results.get('engine_warmup_s')} s"
    )
    print(f"logits vs float32: {results.get('logits_vs_fp32')}")
    for name, row in (results.get("attention") or {}).items():
        print(f"attention {name}: {row}")
    if "errors" in results:
        print(f"ERRORS: {results['errors']}")


if __name__ == "__main__":
    sys.exit(main())
