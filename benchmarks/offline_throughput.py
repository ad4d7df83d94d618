"""Offline generation throughput of the infer engine vs transformers' `generate`.

Runs the same greedy workload (B distinct chat prompts, exactly N new tokens
each, eos ignored) through `infer_scheduler.LLM` and through Hugging Face
transformers (the same GGUF file, dequantized to the same dtype, left-padded
batch `generate`) at each batch size, and prints output tokens per second (the best of
`--repeat` runs after a warm-up; the two sides alternate run by run so that
load from other processes hits both alike).

    uv run python benchmarks/offline_throughput.py --batch-sizes 1,8,32 --output-len 64

Not a test: the figures depend on the machine. The prefix cache is off by
default so both sides compute every prompt token (`--prefix-cache` turns it on).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

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


def infer_runner(args: argparse.Namespace, sizes: list[int]) -> Callable[[int], None]:
    """Load our engine; return run(batch_size) generating exactly output_len tokens each."""
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

    def run(size: int, new: int | None = None) -> None:
        new = new or args.output_len
        outs = llm.generate(chat_prompts(size), max_tokens=new, ignore_eos=True)
        assert all(len(o.token_ids) == new for o in outs)

    return run


def transformers_runner(args: argparse.Namespace) -> Callable[[int], None]:
    """Load the same GGUF with transformers; return run(batch_size) like infer_runner's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infer_worker.loader import default_gguf_path

    if args.model != "smollm2":
        raise SystemExit("the transformers baseline supports only --model smollm2")
    path = default_gguf_path()
    dtype = torch.float32 if args.dtype in ("auto", "float32") else getattr(torch, args.dtype)
    device = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    model = model.to(device).eval()

    def run(size: int, new: int | None = None) -> None:
        new = new or args.output_len
        batch = tok(chat_prompts(size), return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(device)
        with torch.inference_mode():
            out = model.generate(
                **batch,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        assert out.shape[1] - batch["input_ids"].shape[1] == new

    return run


def measure(runners: dict[str, Callable], sizes: list[int], args: argparse.Namespace) -> dict:
    """Best time per (runner, size); runners alternate so machine load hits both alike."""
    for run in runners.values():
        run(2, 4)  # warm up
    best: dict[str, dict[int, float]] = {name: {} for name in runners}
    for size in sizes:
        for _ in range(args.repeat):
            for name, run in runners.items():
                start = time.perf_counter()
                run(size)
                elapsed = time.perf_counter() - start
                best[name][size] = min(best[name].get(size, float("inf")), elapsed)
        for name in runners:
            rate = size * args.output_len / best[name][size]
            print(
                f"{name:12s} batch {size:3d}: {rate:8.1f} output tok/s (best {best[name][size]:.1f} s)",
                flush=True,
            )
    return {
        name: {size: size * args.output_len / t for size, t in times.items()}
        for name, times in best.items()
    }


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
    runners = {"infer": infer_runner(args, sizes)}
    if not args.skip_transformers:
        runners["transformers"] = transformers_runner(args)
    results = measure(runners, sizes, args)
    ours, theirs = results["infer"], results.get("transformers", {})
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
