"""Where the engine's bf16 model departs from transformers in float32, layer by layer.

Builds the Llama-3-8B-shaped random model of gpu_bench.py (or the tiny one
with --smoke), runs one prefill of a few prompts through the engine's model
(with the Triton attention kernel, and again with the torch attention path)
and through transformers in bf16, then converts transformers to float32 as
the reference. Prints ||x - ref|| / ||ref|| of each layer's output and of
the last-token logits for the three bf16 runs.

    python3 benchmarks/gpu_diag.py [--smoke] [--out diag.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_bench import LLAMA3_8B, SMOKE, build_models, prompts_for


def ours_layers(bundle: Any, prompts: list[list[int]], triton: bool) -> list[torch.Tensor]:
    """Each layer's output [n * len, hidden] (float32) and the last-token logits, engine model."""
    import infer_worker.attention as attention
    from infer_worker import AttentionMetadata, KVCache
    from infer_worker.models.step import EagerStep

    n, length = len(prompts), len(prompts[0])
    device, page = bundle.device, 16
    per_seq = -(-length // page)
    cache = KVCache(bundle.config, n * per_seq + 1, page, bundle.dtype, device)
    tables = [[1 + s * per_seq + j for j in range(per_seq)] for s in range(n)]
    meta = AttentionMetadata.build([length] * n, [length] * n, tables, page, device)
    model = bundle.model
    saved = attention._triton_available
    if not triton:
        attention._triton_available = lambda: False
    try:
        with torch.inference_mode():
            ids = torch.tensor(prompts, device=device).flatten()
            pos = torch.arange(length, device=device).repeat(n)
            x = model.embed(ids)
            step = EagerStep(model.rotaries, pos, cache, meta, x.dtype)
            outs = []
            for layer in model.layers:
                x = layer(x, step)
                outs.append(x.float())
            outs.append(model.compute_logits(x[length - 1 :: length]))
    finally:
        attention._triton_available = saved
    return outs


def hf_layers(hf: Any, prompts: list[list[int]]) -> list[torch.Tensor]:
    """The same for transformers (forward hooks on its decoder layers)."""
    outs: list[torch.Tensor] = []

    def hook(_module: Any, _args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        outs.append(out.reshape(-1, out.shape[-1]).float())

    handles = [layer.register_forward_hook(hook) for layer in hf.model.layers]
    try:
        with torch.inference_mode():
            ids = torch.tensor(prompts, device=next(hf.parameters()).device)
            logits = hf(ids).logits[:, -1].float()
    finally:
        for handle in handles:
            handle.remove()
    return [*outs, logits]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = SMOKE if args.smoke else LLAMA3_8B
    hf, bundle = build_models(shape, device, torch.bfloat16)
    report: dict[str, Any] = {
        "rope_parameters": str(getattr(hf.config, "rope_parameters", None)),
        "inv_freq_max_diff": (
            hf.model.rotary_emb.inv_freq.float().cpu() - bundle.model.rotary.inv_freq.float().cpu()
        )
        .abs()
        .max()
        .item(),
        "hf_attn": str(getattr(hf.config, "_attn_implementation", None)),
    }
    prompts = prompts_for(args.prompts, 128, shape["vocab_size"], 3)
    runs = {
        "engine_triton": ours_layers(bundle, prompts, True),
        "engine_torch_attn": ours_layers(bundle, prompts, False),
        "hf_bf16": hf_layers(hf, prompts),
    }
    hf.float()
    ref = hf_layers(hf, prompts)
    names = [f"layer{i}" for i in range(len(ref) - 1)] + ["logits"]
    table = {}
    for name, outs in runs.items():
        table[name] = [
            round(((o - r).norm() / r.norm()).item(), 5) for o, r in zip(outs, ref, strict=True)
        ]
    report["rel_err_vs_fp32"] = {"names": names, **table}
    report["top1_equal"] = {
        name: int((outs[-1].argmax(-1) == ref[-1].argmax(-1)).sum()) for name, outs in runs.items()
    }
    last = len(names) - 1
    pick = sorted({i for i in (0, 1, 2, 3, last // 4, last // 2, last - 1, last) if i <= last})
    print("rel err vs float32 | " + " | ".join(names[i] for i in pick))
    for name, errs in table.items():
        print(f"{name} | " + " | ".join(str(errs[i]) for i in pick))
    print({k: v for k, v in report.items() if k != "rel_err_vs_fp32"})
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
