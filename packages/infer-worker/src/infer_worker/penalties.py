"""Repetition / presence / frequency penalties and logit bias, as vLLM applies them.

Repetition penalty looks at prompt and output tokens; presence and frequency
penalties at output tokens only. Functions return a new tensor when they
change anything and never modify their input.
"""

from __future__ import annotations

import torch

from infer_protocol import SamplingParams


def _counts(ids: list[int], vocab: int, device: torch.device) -> torch.Tensor:
    if not ids:
        return torch.zeros(vocab, device=device)
    t = torch.tensor(ids, device=device, dtype=torch.long)
    t = t[(t >= 0) & (t < vocab)]
    return torch.bincount(t, minlength=vocab).to(torch.float32)


def apply_penalties(
    logits: torch.Tensor,
    params: list[SamplingParams],
    prompt_ids: list[list[int]],
    output_ids: list[list[int]],
) -> torch.Tensor:
    """logits [N, V] with each row's penalties applied (rows without penalties untouched)."""
    rows = [
        i
        for i, p in enumerate(params)
        if p.repetition_penalty != 1.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0
    ]
    if not rows:
        return logits
    dev = logits.device
    vocab = logits.shape[1]
    out_counts = torch.stack([_counts(output_ids[i], vocab, dev) for i in rows])
    prompt_seen = torch.stack([_counts(prompt_ids[i], vocab, dev) for i in rows]) > 0
    rep = torch.tensor([params[i].repetition_penalty for i in rows], device=dev)[:, None]
    freq = torch.tensor([params[i].frequency_penalty for i in rows], device=dev)[:, None]
    pres = torch.tensor([params[i].presence_penalty for i in rows], device=dev)[:, None]
    index = torch.tensor(rows, device=dev)
    sub = logits[index]
    seen = prompt_seen | (out_counts > 0)
    scaled = torch.where(sub > 0, sub / rep, sub * rep)
    sub = torch.where(seen, scaled, sub)
    sub = sub - freq * out_counts - pres * (out_counts > 0).float()
    logits = logits.clone()
    logits[index] = sub
    return logits


def apply_logit_bias(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """logits [N, V] plus each row's logit_bias (ids outside the vocabulary are ignored)."""
    if not any(p.logit_bias for p in params):
        return logits
    vocab = logits.shape[1]
    rows, cols, values = [], [], []
    for i, p in enumerate(params):
        for token, bias in p.logit_bias.items():
            if 0 <= token < vocab:
                rows.append(i)
                cols.append(token)
                values.append(bias)
    logits = logits.clone()
    if rows:
        dev = logits.device
        index = (torch.tensor(rows, device=dev), torch.tensor(cols, device=dev))
        logits.index_put_(
            index, torch.tensor(values, device=dev, dtype=logits.dtype), accumulate=True
        )
    return logits
