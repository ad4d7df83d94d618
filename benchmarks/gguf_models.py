"""Random-weight Llama GGUF files of real shapes, as Q4_K_M or Q8_0, for benchmarks.

    uv run python benchmarks/gguf_models.py --shape llama-3.2-1b --kind Q4_K_M --out /tmp/1b.gguf

Q4_K_M follows llama.cpp's recipe: Q6_K for the output matrix (the token embedding when
tied), for attn_v and ffn_down in the first and last eighth of the layers and every third
layer between, Q4_K elsewhere (encoders: infer_worker.quant.kquants). Q8_0: every matrix
(gguf's own encoder). Norms are F32. The tokenizer and chat template are the default
model's (SmolLM2's 49,152 tokens); the embedding keeps the shape's vocabulary (rows past
the token list are never sampled by a real tokenizer but are computed like any other).
Tensors are generated and written one at a time (seeded by name), so an 8B file needs
about one tensor's memory. Q and K rows are random, so llama.cpp's row permutation is
not applied.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUFWriter
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

from infer_worker.gguf_loader import GGUFFile
from infer_worker.loader import default_gguf_path
from infer_worker.quant.kquants import quantize_q4_k, quantize_q6_k

SHAPES = {
    "llama-3.2-1b": dict(
        hidden=2048, inter=8192, layers=16, heads=32, kv_heads=8, vocab=128256, tied=True
    ),
    "llama-3.1-8b": dict(
        hidden=4096, inter=14336, layers=32, heads=32, kv_heads=8, vocab=128256, tied=False
    ),
}


def _more_bits(layer: int, layers: int) -> bool:
    """llama.cpp's use_more_bits: first/last eighth and every third layer between."""
    eighth = layers // 8
    return layer < eighth or layer >= 7 * layers // 8 or (layer - eighth) % 3 == 2


def tensor_plan(shape: dict, kind: str) -> list[tuple[str, tuple[int, int] | tuple[int], T]]:
    """(GGUF name, numpy shape, type) of every tensor, in file order."""
    h, inter, head_dim = shape["hidden"], shape["inter"], shape["hidden"] // shape["heads"]
    kv = shape["kv_heads"] * head_dim
    q4 = kind == "Q4_K_M"
    base = T.Q4_K if q4 else T.Q8_0
    out_type = T.Q6_K if q4 else T.Q8_0
    plan = [("token_embd.weight", (shape["vocab"], h), out_type if shape["tied"] else base)]
    for i in range(shape["layers"]):
        more = T.Q6_K if q4 and _more_bits(i, shape["layers"]) else base
        plan += [
            (f"blk.{i}.attn_norm.weight", (h,), T.F32),
            (f"blk.{i}.attn_q.weight", (h, h), base),
            (f"blk.{i}.attn_k.weight", (kv, h), base),
            (f"blk.{i}.attn_v.weight", (kv, h), more),
            (f"blk.{i}.attn_output.weight", (h, h), base),
            (f"blk.{i}.ffn_norm.weight", (h,), T.F32),
            (f"blk.{i}.ffn_gate.weight", (inter, h), base),
            (f"blk.{i}.ffn_up.weight", (inter, h), base),
            (f"blk.{i}.ffn_down.weight", (h, inter), more),
        ]
    plan.append(("output_norm.weight", (h,), T.F32))
    if not shape["tied"]:
        plan.append(("output.weight", (shape["vocab"], h), out_type))
    return plan


def _encode(name: str, dims: tuple[int, ...], qtype: T) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if qtype == T.F32:
        return (1.0 + 0.1 * rng.standard_normal(dims)).astype(np.float32)
    std = 0.5 if "token_embd" in name else 0.02
    parts = []
    for start in range(0, dims[0], 4096):  # bounded float32 temporaries
        rows = (rng.standard_normal((min(4096, dims[0] - start), dims[1])) * std).astype(np.float32)
        if qtype == T.Q4_K:
            parts.append(quantize_q4_k(rows)[0])
        elif qtype == T.Q6_K:
            parts.append(quantize_q6_k(rows)[0])
        else:
            parts.append(quantize(rows, qtype))
    return np.concatenate(parts)


def write_model(path: Path, shape_name: str | dict, kind: str) -> None:
    """Write the GGUF file (kind: Q4_K_M or Q8_0) one tensor at a time; shape_name is a
    key of SHAPES or a dict of the same fields."""
    shape = SHAPES[shape_name] if isinstance(shape_name, str) else shape_name
    meta = GGUFFile(default_gguf_path()).meta
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(f"random {shape_name} {kind}")
    writer.add_block_count(shape["layers"])
    writer.add_context_length(8192)
    writer.add_embedding_length(shape["hidden"])
    writer.add_feed_forward_length(shape["inter"])
    writer.add_head_count(shape["heads"])
    writer.add_head_count_kv(shape["kv_heads"])
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(shape["hidden"] // shape["heads"])
    writer.add_vocab_size(shape["vocab"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    writer.add_token_list(meta["tokenizer.ggml.tokens"])
    writer.add_token_types(meta["tokenizer.ggml.token_type"])
    writer.add_token_merges(meta["tokenizer.ggml.merges"])
    writer.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
    writer.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
    writer.add_chat_template(meta["tokenizer.chat_template"])
    plan = tensor_plan(shape, kind)
    for name, dims, qtype in plan:
        if qtype == T.F32:
            writer.add_tensor_info(name, dims, np.dtype(np.float32), dims[0] * 4)
            continue
        block, size = GGML_QUANT_SIZES[qtype]
        byte_shape = (dims[0], dims[1] // block * size)
        writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), np.prod(byte_shape), qtype)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for name, dims, qtype in plan:
        writer.write_tensor_data(_encode(name, dims, qtype))
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b")
    parser.add_argument("--kind", choices=["Q4_K_M", "Q8_0"], default="Q4_K_M")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_model(args.out, args.shape, args.kind)
    print(f"{args.out}: {args.out.stat().st_size / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
