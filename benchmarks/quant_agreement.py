"""Greedy agreement of the quantized paths with transformers float32 on the same weights.

    uv run python benchmarks/quant_agreement.py [--threads 2] [--linears]

The default model's real weights (infer_worker.testing_quant) served as GGUF Q4_K_M,
Q4_0 and Q8_0 files in their kernel formats (`--gguf-weights kernel`), and from a bf16
HF directory dense and with `--quantize int4` / `int8`, all with bf16 activations; each
scored over the first 256 tokens of a natural-language text against transformers
float32 holding the dequantized weights, teacher-forced in one pass: with the group
linears on the tiles path (as a prefill runs them) and on the decode kernel. --linears adds
the per-linear error of the group kernels against x @ dequant(w).T in float32.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from infer_worker import load_model
from infer_worker.gguf_loader import GGUFFile
from infer_worker.loader import default_gguf_path
from infer_worker.quant import kernels
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


def linear_errors(weights: dict[str, torch.Tensor]) -> None:
    """max |error| / max |row| and mean relative norm error per (format, rows, path)."""
    torch.manual_seed(0)
    stats: dict[tuple, list] = {}
    for name, w in weights.items():
        if w.dim() != 2 or "embed" in name:
            continue
        for kind, make in MAKE.items():
            grid = make(w.bfloat16())
            for rows in (1, 64):
                x = torch.randn(rows, w.shape[1]).bfloat16()
                ref = kernels.reference_matmul(x, grid)
                for path, fn in (
                    ("kernel", kernels.kernel_matmul),
                    ("tiles", kernels.tiles_matmul),
                ):
                    err = (fn(x, grid).float() - ref).abs()
                    top = (err / ref.abs().amax(dim=1, keepdim=True)).max().item()
                    entry = stats.setdefault((kind, rows, path), [0.0, []])
                    entry[0] = max(entry[0], top)
                    entry[1].append((err.norm() / ref.norm()).item())
    print(
        "| format | rows | path | max err / max row | mean rel. norm err |\n|---|---:|---|---:|---:|"
    )
    for (kind, rows, path), (top, norms) in sorted(stats.items()):
        print(f"| {kind} | {rows} | {path} | {top:.1e} | {sum(norms) / len(norms):.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--linears", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config, weights = smollm2_weights()
    ids = GGUFFile(default_gguf_path()).tokenizer().encode(TEXT).ids[:256]
    reference = LlamaForCausalLM(LlamaConfig(**config)).float().eval()
    print("| served (bf16 activations unless said) | prefill: tiles path | decode kernel |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        hf_dir = write_hf_dir(Path(tmp) / "hf", config, weights)
        runs = [("f32", None), ("bf16", None), ("int4", None), ("int8", None), ("int8-f32", None)]
        runs += [("Q4_K_M", "gguf"), ("Q4_0", "gguf"), ("Q8_0", "gguf")]
        for name, kind in runs:
            if kind == "gguf":
                path = Path(tmp) / f"{name}.gguf"
                held, counts = write_gguf_mix(path, name, config, weights)
                bundle = load_model(
                    str(path), device="cpu", dtype="bfloat16", gguf_weights="kernel"
                )
                label = f"{name} file, kernel formats ({', '.join(f'{n} {c}' for n, c in sorted(counts.items()))} matrices)"
            elif name[:4] in MAKE:
                held = grid_weights(weights, MAKE[name[:4]])
                dtype = "float32" if name.endswith("f32") else "bfloat16"
                bundle = load_model(str(hf_dir), device="cpu", dtype=dtype, quantize=name[:4])
                label = f"bf16 HF dir, `--quantize {name[:4]} --dtype {dtype}`"
            else:
                held = {k: v.bfloat16().float() for k, v in weights.items()}
                dtype = "float32" if name == "f32" else "bfloat16"
                bundle = load_model(str(hf_dir), device="cpu", dtype=dtype)
                label = f"bf16 HF dir, dense, --dtype {dtype}"
            want = reference_picks(reference, held, ids)
            got = [served_picks(bundle, ids, path) for path in ("plan", "kernel")]
            agree = [f"{(g == want).float().mean().item():.1%}" for g in got]
            print(f"| {label} | {agree[0]} | {agree[1]} |", flush=True)
    if args.linears:
        linear_errors(weights)
    print(f"({time.perf_counter() - start:.0f} s, {args.threads} threads)")


if __name__ == "__main__":
    main()
