"""Each family written as a GGUF file the way llama.cpp's converter does (Q/K permutation,
Gemma norms + 1, fused Phi-3 tensors) gives transformers' float32 greedy tokens: infer
loads the GGUF, transformers loads the same GGUF (`gguf_file=`) and the HF directory it
came from, and all three agree over 48 tokens, batched, offline and over HTTP.

The configs keep to what transformers' GGUF reader keeps (it drops Gemma's soft-cap
values, query scale and layer pattern, Phi-3's partial rotary and longrope); those
features are checked against the HF directory in test_worker_gguf_features.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from family_models import prompts, reference_greedy
from gguf_families import gguf_vocab_of_default, write_hf_model
from served_greedy import served_greedy
from transformers import AutoModelForCausalLM

from infer_scheduler import LLM
from infer_worker import load_model
from infer_worker.testing_gguf import write_hf_as_gguf

NEW_TOKENS = 48
LENGTHS = [30, 50, 17]
# Values a GGUF does not state are transformers' GGUF-reader defaults, which llama.cpp
# hard-codes too (Gemma: query scale = head_dim = 256; Gemma 2 soft-caps 50/30 and 1:1
# layers; Gemma 3 5:1 layers, local base 10000). Gemma windows are shorter than the prompts.
FAMILIES = {
    "llama": {"model_type": "llama", "head_dim": 16, "tie_word_embeddings": False},
    "mistral": {"model_type": "mistral", "head_dim": 16, "sliding_window": None},
    "qwen2": {"model_type": "qwen2", "tie_word_embeddings": False},
    # transformers' GGUF reader takes Qwen3's head_dim from its default (128)
    "qwen3": {"model_type": "qwen3", "head_dim": 128},
    "gemma2": {
        "model_type": "gemma2",
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 12,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        # transformers' GGUF reader has no output.weight for gemma2: Gemma 2 files are tied
        "tie_word_embeddings": True,
    },
    "gemma3": {
        "model_type": "gemma3_text",
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 10,
        "rope_theta": 1_000_000.0,
    },
    "phi3": {"model_type": "phi3", "sliding_window": None},
}


@pytest.fixture(scope="module")
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="iggf-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def gguf_greedy(path: Path, ids: list[list[int]], new_tokens: int) -> list[list[int]]:
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    model.eval()
    out = []
    with torch.no_grad():
        for prompt in ids:
            x = torch.tensor([prompt])
            gen = model.generate(
                x,
                attention_mask=torch.ones_like(x),
                do_sample=False,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                eos_token_id=None,
                pad_token_id=0,
            )
            out.append(gen[0, len(prompt) :].tolist())
    return out


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest, run_dir: Path) -> dict:
    name = request.param
    hf_dir = write_hf_model(run_dir / name, **FAMILIES[name])
    # general.name without "mistral": transformers 5 maps such llama files to a "mistral"
    # GGUF architecture gguf-py does not have and cannot load them at all
    path = write_hf_as_gguf(
        run_dir / f"tiny-{name}.gguf", hf_dir, gguf_vocab_of_default(), name=f"tiny {name[:3]}"
    )
    ids = prompts(49152, LENGTHS)
    return {
        "name": name,
        "gguf": path,
        "prompts": ids,
        "reference": reference_greedy(hf_dir, ids, NEW_TOKENS),
    }


def test_transformers_reads_the_gguf_as_the_hf_directory(family: dict) -> None:
    assert gguf_greedy(family["gguf"], family["prompts"], NEW_TOKENS) == family["reference"]


def test_offline_greedy_from_gguf_matches_transformers(family: dict) -> None:
    llm = LLM(str(family["gguf"]), device="cpu", dtype="float32", max_batch_tokens=24, block_size=8)
    outs = llm.generate(family["prompts"], max_tokens=NEW_TOKENS, ignore_eos=True)
    # real continuations, not one repeated token everywhere
    assert len({t for expected in family["reference"] for t in expected}) > 8
    assert [out.token_ids for out in outs] == family["reference"]


def test_http_greedy_from_gguf_matches_transformers(family: dict, run_dir: Path) -> None:
    name = family["name"]
    texts, completion_tokens = served_greedy(
        str(family["gguf"]),
        f"tiny-{name}",
        family["prompts"],
        NEW_TOKENS,
        f"ipc://{run_dir}/{name}.ipc",
    )
    tokenizer = load_model(str(family["gguf"])).tokenizer
    expected = [tokenizer.decode(r, skip_special_tokens=True) for r in family["reference"]]
    assert texts == expected
    assert completion_tokens == NEW_TOKENS * len(family["prompts"])
