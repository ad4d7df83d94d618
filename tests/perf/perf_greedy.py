"""greedy(): batched greedy decoding over the paged cache, the way the scheduler steps."""

from __future__ import annotations

import torch

from infer_worker import AttentionMetadata, CausalLM, KVCache, ModelBundle


def greedy(
    model: CausalLM, bundle: ModelBundle, prompts: list[list[int]], steps: int
) -> tuple[list[list[int]], torch.Tensor]:
    """Greedy tokens of every prompt decoded together (one batched decode per step),
    and the float32 logits of the first sampled step [len(prompts), vocab]."""
    bs = 16
    width = -(-(max(map(len, prompts)) + steps) // bs)
    cache = KVCache(bundle.config, len(prompts) * width + 1, bs, bundle.dtype, "cpu")
    # reversed block order: tables are not contiguous and block 0 is never used
    tables = [list(range((s + 1) * width, s * width, -1)) for s in range(len(prompts))]
    outs: list[list[int]] = [[] for _ in prompts]
    first = None
    for s, prompt in enumerate(prompts):  # prefill each prompt alone
        meta = AttentionMetadata.build([len(prompt)], [len(prompt)], [tables[s]], bs, "cpu")
        hidden = model(torch.tensor(prompt), torch.arange(len(prompt)), cache, meta)
        logits = model.compute_logits(hidden[-1:])
        first = logits if first is None else torch.cat([first, logits])
        outs[s].append(int(logits.argmax()))
    for _ in range(steps - 1):
        lens = [len(p) + len(o) for p, o in zip(prompts, outs, strict=True)]
        meta = AttentionMetadata.build([1] * len(prompts), lens, tables, bs, "cpu")
        ids = torch.tensor([o[-1] for o in outs])
        hidden = model(ids, torch.tensor(lens) - 1, cache, meta)
        for s, token in enumerate(model.compute_logits(hidden).argmax(-1).tolist()):
            outs[s].append(token)
    return outs, first
