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
    """logits [N, V] with each row's penalties applied."""
    rows = [
        i
        for i, p in enumerate(params)
        if p.repetition_penalty != 1.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0
    ]
    if not rows:
        return logits
    logits = logits.clone()
    vocab = logits.shape[1]
    for i in rows:
        p = params[i]
        out_counts = _counts(output_ids[i], vocab, logits.device)
        row = logits[i]
        if p.repetition_penalty != 1.0:
            seen = (out_counts + _counts(prompt_ids[i], vocab, logits.device)) > 0
            scaled = torch.where(row > 0, row / p.repetition_penalty, row * p.repetition_penalty)
            row = torch.where(seen, scaled, row)
        row = row - p.frequency_penalty * out_counts - p.presence_penalty * (out_counts > 0).float()
        logits[i] = row
    return logits


def apply_logit_bias(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """logits [N, V] plus each row's logit_bias (ids outside the vocabulary are ignored)."""
    if not any(p.logit_bias for p in params):
        return logits
    logits = logits.clone()
    vocab = logits.shape[1]
    for i, p in enumerate(params):
        for token, bias in p.logit_bias.items():
            if 0 <= token < vocab:
                logits[i, token] += bias
    return logits
