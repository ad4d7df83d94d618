"""Sampling properties: greedy, top-k/top-p/min-p, seeds, penalties, bias, logprobs."""

from __future__ import annotations

import pytest
import torch

from infer_protocol import SamplingParams
from infer_worker import Sampler, make_generator

VOCAB = 64


def logits_batch(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


def run(
    sampler: Sampler,
    logits: torch.Tensor,
    params: list[SamplingParams],
    seeds=None,
    prompt=None,
    output=None,
):
    n = len(params)
    gens = [make_generator(s, "cpu") for s in (seeds or [None] * n)]
    return sampler.sample(
        logits, params, gens, prompt or [[] for _ in range(n)], output or [[] for _ in range(n)]
    )


def draws(params: SamplingParams, logits_row: torch.Tensor, times: int, seed: int = 1) -> list[int]:
    sampler = Sampler(VOCAB, "cpu")
    gen = make_generator(seed, "cpu")
    return [
        sampler.sample(logits_row[None], [params], [gen], [[]], [[]]).token_ids[0]
        for _ in range(times)
    ]


def test_greedy_and_top_k_one_pick_the_argmax() -> None:
    logits = logits_batch(6)
    sampler = Sampler(VOCAB, "cpu")
    params = [SamplingParams(temperature=0.0)] * 3 + [
        SamplingParams(temperature=1.5, top_k=1, top_p=1.0)
    ] * 3
    out = run(sampler, logits, params, seeds=[None, 1, 2, None, 3, 4])
    assert out.token_ids == logits.argmax(-1).tolist()
    assert out.logprobs is None and out.top_logprobs is None


def test_input_logits_are_not_modified() -> None:
    logits = logits_batch(2)
    copy = logits.clone()
    params = [SamplingParams(repetition_penalty=1.5, logit_bias={3: 5.0}, presence_penalty=1.0)] * 2
    run(Sampler(VOCAB, "cpu"), logits, params, prompt=[[1, 2], [3]], output=[[4], [5]])
    assert torch.equal(logits, copy)


def test_top_k_only_draws_from_the_k_best() -> None:
    row = logits_batch(1)[0]
    allowed = set(torch.topk(row, 5).indices.tolist())
    seen = draws(SamplingParams(temperature=5.0, top_k=5, top_p=1.0), row, 300)
    assert set(seen) <= allowed
    assert len(set(seen)) == 5  # high temperature reaches all of them


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    row = torch.full((VOCAB,), -30.0)
    row[[7, 11, 13, 17]] = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    params = SamplingParams(temperature=1.0, top_k=0, top_p=0.75, min_p=0.0)
    seen = draws(params, row, 300)
    assert set(seen) == {7, 11}  # 0.5 < 0.75 needs 0.3 too; 0.8 >= 0.75 stops there
    counts = {t: seen.count(t) for t in set(seen)}
    assert counts[7] > counts[11]


def test_top_p_boundary_and_zero() -> None:
    row = torch.full((VOCAB,), -30.0)
    row[[7, 11, 13]] = torch.log(torch.tensor([0.5, 0.25, 0.25]))
    exact = SamplingParams(temperature=1.0, top_k=0, top_p=0.5)
    assert set(draws(exact, row, 100)) == {7}  # 0.5 already reaches 0.5
    zero = SamplingParams(temperature=1.0, top_k=0, top_p=0.0)
    assert set(draws(zero, row, 50)) == {7}  # the best candidate always stays


def test_min_p_drops_tokens_below_a_fraction_of_the_best() -> None:
    row = torch.full((VOCAB,), -30.0)
    row[[1, 2, 3]] = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    params = SamplingParams(temperature=1.0, top_k=-1, top_p=1.0, min_p=0.25)
    assert set(draws(params, row, 200)) == {1, 2}  # 0.1 < 0.25 * 0.6


def test_seeds_reproduce_whatever_else_is_in_the_batch() -> None:
    sampler = Sampler(VOCAB, "cpu")
    base = logits_batch(1, seed=5)
    p = SamplingParams(temperature=1.0, top_k=0, top_p=1.0)
    alone = [run(sampler, base, [p], seeds=[42]).token_ids[0]]
    gen = make_generator(42, "cpu")
    alone = [sampler.sample(base, [p], [gen], [[]], [[]]).token_ids[0] for _ in range(20)]
    gen = make_generator(42, "cpu")
    others = [make_generator(7, "cpu"), None, make_generator(9, "cpu")]
    mixed = []
    for step in range(20):
        noise = logits_batch(3, seed=100 + step)
        batch = torch.cat([noise[:1], base, noise[1:]])
        params = [
            SamplingParams(temperature=0.8, top_k=10),
            p,
            SamplingParams(temperature=0.0),
            SamplingParams(top_p=0.5),
        ]
        gens = [others[0], gen, others[1], others[2]]
        mixed.append(sampler.sample(batch, params, gens, [[]] * 4, [[]] * 4).token_ids[1])
    assert mixed == alone
    assert len(set(alone)) > 1  # it really samples


def test_different_seeds_differ() -> None:
    row = torch.zeros(VOCAB)
    p = SamplingParams(temperature=1.0, top_k=0, top_p=1.0)
    assert draws(p, row, 30, seed=1) != draws(p, row, 30, seed=2)


def test_sampling_follows_the_distribution() -> None:
    row = torch.full((VOCAB,), -30.0)
    row[[4, 9]] = torch.log(torch.tensor([0.8, 0.2]))
    seen = draws(SamplingParams(temperature=1.0, top_k=0, top_p=1.0), row, 1000)
    assert 0.74 < seen.count(4) / 1000 < 0.86


def test_repetition_penalty_moves_seen_logits_toward_zero() -> None:
    logits = torch.zeros(1, VOCAB)
    logits[0, 3] = 2.0
    logits[0, 4] = -2.0
    logits[0, 5] = 1.9
    p = SamplingParams(
        temperature=0.0, repetition_penalty=2.0, logprobs=True, top_logprobs=VOCAB // 4
    )
    out = run(Sampler(VOCAB, "cpu"), logits, [p], prompt=[[3]], output=[[4]])
    assert out.token_ids == [5]  # 3 was seen: 2.0 -> 1.0 < 1.9
    # logprobs are the raw distribution's: the penalty changed the pick, not them
    top = dict(out.top_logprobs[0])
    assert top[3] - top[5] == pytest.approx(2.0 - 1.9, abs=1e-5)
    assert out.logprobs[0] == pytest.approx(torch.log_softmax(logits[0], -1)[5].item(), abs=1e-5)


def test_presence_and_frequency_penalties_use_output_only() -> None:
    logits = torch.zeros(2, VOCAB)
    logits[:, 1] = 1.0  # the best token, but already generated
    params = [
        SamplingParams(temperature=0.0, frequency_penalty=0.6, logprobs=True, top_logprobs=3),
        SamplingParams(temperature=0.0, presence_penalty=2.0, logprobs=True, top_logprobs=3),
    ]
    prompt = [[9, 9, 9], [9]]
    out = Sampler(VOCAB, "cpu").sample(logits, params, [None, None], prompt, [[1, 1], [1]])
    assert out.token_ids[0] != 1 and out.token_ids[1] != 1
    # the raw distribution still ranks the penalised token 1 first
    assert [row[0][0] for row in out.top_logprobs] == [1, 1]
    from infer_worker.penalties import apply_penalties

    penalised = apply_penalties(logits, params, prompt, [[1, 1], [1]])
    assert penalised[0, 1].item() == pytest.approx(1.0 - 1.2)
    assert penalised[1, 1].item() == pytest.approx(1.0 - 2.0)
    # the prompt-only token 9 is not penalised: it ties with every other unseen token
    assert penalised[:, 9].tolist() == penalised[:, 0].tolist() == [0.0, 0.0]


def test_penalty_values_exactly() -> None:
    from infer_worker.penalties import apply_penalties

    logits = torch.ones(3, 8)
    logits[2, 5] = -2.0
    params = [
        SamplingParams(frequency_penalty=0.5, presence_penalty=0.25, repetition_penalty=1.0),
        SamplingParams(),
        SamplingParams(repetition_penalty=2.0),
    ]
    out = apply_penalties(logits, params, [[6], [1], [5]], [[1, 1, 1, 2], [1], [3]])
    expected = torch.ones(8)
    expected[1] = 1 - 1.5 - 0.25
    expected[2] = 1 - 0.5 - 0.25
    assert torch.allclose(out[0], expected)
    assert torch.equal(out[1], logits[1])  # no penalties asked: untouched
    assert (
        out[2, 5] == -4.0 and out[2, 3] == 0.5 and out[2, 0] == 1.0
    )  # prompt and output both count


def test_logit_bias_can_force_and_ban_tokens() -> None:
    logits = logits_batch(2)
    best = logits.argmax(-1).tolist()
    params = [
        SamplingParams(temperature=0.0, logit_bias={17: 100.0}),
        SamplingParams(temperature=0.0, logit_bias={best[1]: -100.0, 10**9: 5.0}),
    ]
    out = run(Sampler(VOCAB, "cpu"), logits, params)
    assert out.token_ids[0] == 17
    assert out.token_ids[1] != best[1]


def test_logprobs_and_top_logprobs() -> None:
    logits = logits_batch(3)
    params = [
        SamplingParams(temperature=0.0, logprobs=True, top_logprobs=5),
        SamplingParams(temperature=0.0),
        SamplingParams(temperature=1.0, logprobs=True, top_logprobs=0),
    ]
    out = run(Sampler(VOCAB, "cpu"), logits, params, seeds=[None, None, 3])
    logp = torch.log_softmax(logits, -1)
    assert out.logprobs is not None and len(out.logprobs) == 3
    for row, token in enumerate(out.token_ids):
        assert out.logprobs[row] == pytest.approx(logp[row, token].item(), abs=1e-5)
    top = out.top_logprobs
    assert len(top[0]) == 5 and top[1] == [] and top[2] == []
    ids = [t for t, _ in top[0]]
    assert ids == torch.topk(logp[0], 5).indices.tolist()
    values = [v for _, v in top[0]]
    assert values == sorted(values, reverse=True)
    assert top[0][0][0] == out.token_ids[0]


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError):
        Sampler(VOCAB, "cpu").sample(logits_batch(2), [SamplingParams()], [None], [[]], [[]])


def test_make_generator() -> None:
    assert make_generator(None, "cpu") is None
    a, b = make_generator(5, "cpu"), make_generator(5, "cpu")
    assert torch.rand(3, generator=a).tolist() == torch.rand(3, generator=b).tolist()
    assert make_generator(-1, "cpu") is not None and make_generator(2**64 - 1, "cpu") is not None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampling_is_seeded_and_greedy_exact() -> None:
    sampler = Sampler(VOCAB, "cuda")
    logits = logits_batch(4).cuda()
    params = [
        SamplingParams(temperature=0.0),
        SamplingParams(temperature=1.0, top_k=0, top_p=0.9),
    ] * 2

    def once() -> list[int]:
        gens = [None, make_generator(3, "cuda"), None, make_generator(4, "cuda")]
        return sampler.sample(logits, params, gens, [[]] * 4, [[]] * 4).token_ids

    first = once()
    assert first == once()
    best = logits.argmax(-1).tolist()
    assert first[0] == best[0] and first[2] == best[2]


def test_row_argmax_is_torch_argmax() -> None:
    """The chunked argmax picks the first maximal index like torch.argmax, NaN included."""
    from infer_worker.sampler import row_argmax

    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 4096, generator=gen)
    logits[1, 100] = logits[1, 3000] = 50.0  # a tie across chunks: the first wins
    logits[2, 10] = logits[2, 11] = 50.0  # a tie inside a chunk
    logits[3, 2000] = float("nan")
    logits[4] = 0.0  # all equal
    assert torch.equal(row_argmax(logits), torch.argmax(logits, dim=-1))
    assert row_argmax(logits)[1] == 100 and row_argmax(logits)[2] == 10
    odd = torch.randn(3, 1001, generator=gen)  # not a multiple of the chunk count
    assert torch.equal(row_argmax(odd), torch.argmax(odd, dim=-1))
