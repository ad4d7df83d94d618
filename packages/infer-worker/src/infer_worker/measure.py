"""Measure load time and single-sequence decode speed: python -m infer_worker.measure [model].

Prints one JSON line: load_s, prefill_tokens, prefill_s, decode_tokens, decode_tokens_per_s,
device, dtype and torch threads. A command, not a test: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from .kv_cache import KVCache
from .loader import load_model
from .metadata import AttentionMetadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="smollm2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=16)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    bundle = load_model(args.model, device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - start
    dev, bs = bundle.device, args.block_size
    total = args.prompt_tokens + args.decode_tokens
    blocks = -(-total // bs)
    cache = KVCache(bundle.config, blocks + 1, bs, bundle.dtype, dev)
    table = [list(range(1, blocks + 1))]
    prompt = torch.randint(100, 1000, (args.prompt_tokens,), device=dev)

    def step(ids: torch.Tensor, first: int) -> int:
        n = ids.numel()
        meta = AttentionMetadata.build([n], [first + n], table, bs, dev)
        positions = torch.arange(first, first + n, device=dev)
        hidden = bundle.model(ids, positions, cache, meta)
        return int(bundle.model.compute_logits(hidden[-1:]).argmax())

    _sync(dev)
    t0 = time.perf_counter()
    token = step(prompt, 0)
    _sync(dev)
    prefill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(args.decode_tokens):
        token = step(torch.tensor([token], device=dev), args.prompt_tokens + i)
    _sync(dev)
    decode_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "model": bundle.served_name,
                "device": str(dev),
                "dtype": str(bundle.dtype).removeprefix("torch."),
                "threads": torch.get_num_threads(),
                "load_s": round(load_s, 2),
                "prefill_tokens": args.prompt_tokens,
                "prefill_s": round(prefill_s, 3),
                "decode_tokens": args.decode_tokens,
                "decode_tokens_per_s": round(args.decode_tokens / decode_s, 1),
            }
        )
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
