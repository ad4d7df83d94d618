"""Offline generation throughput of the infer engine vs transformers' `generate`.

Runs the same greedy workload (B distinct chat prompts, exactly N new tokens
each, eos ignored) through `infer_scheduler.LLM` and through Hugging Face
transformers (the same GGUF file, dequantized to the same dtype, left-padded
batch `generate`) at each batch size, and prints output tokens per second (the best of
`--repeat` runs, after a warm-up).

    uv run python benchmarks/offline_throughput.py --batch-sizes 1,8,32 --output-len 64

Not a test: the figures depend on the machine. The prefix cache is off by
default so both sides compute every prompt token (`--prefix-cache` turns it on).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

TOPICS = [
    "the sea",
    "a mountain",
    "coffee",
    "the moon",
    "a library",
    "rain",
    "a train journey",
    "a garden",
    "winter",
    "a violin",
    "the desert",
    "a lighthouse",
    "bread",
    "a city at night",
    "a river",
    "friendship",
    "a bicycle",
    "snow",
    "a market",
    "the stars",
    "a forest",
    "tea",
    "an old clock",
    "the wind",
    "a harbor",
    "autumn",
    "a candle",
    "a bridge",
    "the sun",
    "a museum",
    "a storm",
    "a cat",
]


def chat_prompts(count: int) -> list[str]:
    """`count` distinct ChatML prompts (cycling the topics with a number if needed)."""
    out = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        extra = f" (version {i // len(TOPICS) + 1})" if i >= len(TOPICS) else ""
        out.append(
            f"<|im_start|>user\nWrite a short story about {topic}{extra}.<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
    return out


def bench_infer(args: argparse.Namespace, sizes: list[int]) -> dict[int, float]:
    from infer_scheduler import LLM

    llm = LLM(
        args.model,
        device=args.device,
        dtype=args.dtype,
        enable_prefix_cache=args.prefix_cache,
        max_running=max(sizes),
        max_batch_tokens=args.max_batch_tokens,
        kv_cache_tokens=max(sizes) * (args.output_len + 64) * 2,
    )
    llm.generate(chat_prompts(2), max_tokens=4, ignore_eos=True)  # warm up
    results = {}
    for size in sizes:
        prompts = chat_prompts(size)
        elapsed = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            outs = llm.generate(prompts, max_tokens=args.output_len, ignore_eos=True)
            elapsed = min(elapsed, time.perf_counter() - start)
            assert all(len(o.token_ids) == args.output_len for o in outs)
        results[size] = size * args.output_len / elapsed
        print(
            f"infer        batch {size:3d}: {results[size]:8.1f} output tok/s ({elapsed:.1f} s)",
            flush=True,
        )
    return results


def bench_transformers(args: argparse.Namespace, sizes: list[int]) -> dict[int, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infer_worker.loader import default_gguf_path

    path = default_gguf_path() if args.model == "smollm2" else None
    if path is None:
        raise SystemExit("the transformers baseline supports only --model smollm2")
    dtype = torch.float32 if args.dtype in ("auto", "float32") else getattr(torch, args.dtype)
    device = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    model = model.to(device).eval()

    def run(prompts: list[str], new: int) -> None:
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.inference_mode():
            out = model.generate(
                **batch,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        assert out.shape[1] - batch["input_ids"].shape[1] == new

    run(chat_prompts(2), 4)  # warm up
    results = {}
    for size in sizes:
        elapsed = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            run(chat_prompts(size), args.output_len)
            elapsed = min(elapsed, time.perf_counter() - start)
        results[size] = size * args.output_len / elapsed
        print(
            f"transformers batch {size:3d}: {results[size]:8.1f} output tok/s ({elapsed:.1f} s)",
            flush=True,
        )
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--max-batch-tokens", type=int, default=None)
    p.add_argument("--repeat", type=int, default=2, help="runs per batch size; the fastest counts")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for both sides")
    p.add_argument("--prefix-cache", action="store_true")
    p.add_argument("--skip-transformers", action="store_true")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}",
        flush=True,
    )
    ours = bench_infer(args, sizes)
    theirs = {} if args.skip_transformers else bench_transformers(args, sizes)
    print("\n| batch | infer tok/s | transformers tok/s | ratio |\n|---:|---:|---:|---:|")
    for size in sizes:
        base = theirs.get(size)
        ratio = f"{ours[size] / base:.2f}x" if base else "-"
        base_text = f"{base:.1f}" if base else "-"
        print(f"| {size} | {ours[size]:.1f} | {base_text} | {ratio} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "infer": ours, "transformers": theirs}, f, indent=2)


if __name__ == "__main__":
    main()
