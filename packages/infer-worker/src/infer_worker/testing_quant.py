"""Test and benchmark helper: the default model (SmolLM2-135M) re-quantized, and greedy
agreement with transformers float32 on the dequantized weights, teacher-forced.

The real weights are the default GGUF's (Q4_1) decoded by gguf's own dequantizer, in
transformers' naming and row order. From them: an HF directory in bf16 (for
`--quantize`), and GGUF files written in llama.cpp's mixes with the project's K-quant
encoders (quant/kquants.py) and gguf's own, each with its reference weights decoded
again by gguf's dequantizer (never by infer's loader). `agreement` scores every position
of one token sequence: greedy picks of the served model against transformers float32.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize, quantize
from safetensors.torch import save_file

from .gguf_loader import GGUFFile
from .kv_cache import KVCache
from .loader import ModelBundle, default_gguf_path
from .metadata import AttentionMetadata
from .quant import kernels
from .quant.kquants import quantize_q4_k, quantize_q6_k
from .testing_gguf import gguf_tensor_name, permute, write_gguf

T = GGMLQuantizationType
Weights = dict[str, torch.Tensor]
_K_BLOCK = 256
_PLAN = kernels.plan  # the machine's plan (served_picks swaps it for a moment)
# llama.cpp's replacement when a row is not a whole number of 256-weight K-quant blocks
# (SmolLM2's 576 columns): what its quantizer writes instead
_FALLBACK = {T.Q4_K: T.Q5_0, T.Q6_K: T.Q8_0}
# natural-language text for the teacher-forced runs (over 256 tokens with SmolLM2's tokenizer)
TEXT = (
    "The lighthouse on the northern cape was built in 1874, after a winter in which three "
    "ships were lost on the rocks below the cliffs. Its first keeper, a former sailor "
    "named Thomas Reid, lived in the small stone cottage beside the tower with his wife "
    "and their four children. Every evening he climbed the one hundred and twelve steps "
    "to light the oil lamp, and every morning he climbed them again to trim the wick, "
    "polish the brass and clean the great glass lens that gathered the light into a "
    "single beam. In calm weather the beam could be seen from twenty miles out at sea. In "
    "storms, when the wind rattled the windows and the waves threw spray over the gallery "
    "rail, Reid stayed awake through the night, watching the lamp and writing short notes "
    "in the logbook about the weather, the passing ships and the state of the sea. The "
    "logbooks survive today in the town museum, and they tell a quiet story of routine "
    "and endurance. Supplies arrived by boat once a month when the sea allowed it, and in "
    "the hard winter of 1881 the family went nearly seven weeks without fresh food. The "
    "children learned to read from the few books the supply boat brought, and the eldest "
    "daughter later became a teacher in the village school. When the lamp was finally "
    "replaced by an electric light in 1931, the last keeper left the cape, and the "
    "cottage stood empty for many years. Now it has been restored, and visitors can climb "
    "the tower on summer afternoons to look out over the same restless water that the "
    "keepers watched for more than half a century."
)


def _more_bits(layer: int, layers: int) -> bool:
    """llama.cpp's use_more_bits: first/last eighth and every third layer between."""
    eighth = layers // 8
    return layer < eighth or layer >= 7 * layers // 8 or (layer - eighth) % 3 == 2


def mix_type(mix: str, name: str, cols: int, layers: int) -> GGMLQuantizationType:
    """The type llama.cpp's `mix` (Q4_K_M, Q4_0, Q8_0) gives the HF matrix `name`.

    The tied embedding (the logits projection) is Q6_K in Q4_K_M and Q4_0, Q8_0 in Q8_0;
    Q4_K_M puts attn_v and ffn_down of the use_more_bits layers in Q6_K, the rest in
    Q4_K; K-quants fall back per _FALLBACK when cols is not a multiple of 256."""
    if mix == "Q8_0":
        return T.Q8_0
    if "embed_tokens" in name or name == "lm_head.weight":
        kind = T.Q6_K
    elif mix == "Q4_0":
        return T.Q4_0
    elif mix != "Q4_K_M":
        raise ValueError(f"unknown mix {mix!r}")
    elif name.endswith(("v_proj.weight", "down_proj.weight")):
        kind = T.Q6_K if _more_bits(int(name.split(".")[2]), layers) else T.Q4_K
    else:
        kind = T.Q4_K
    return _FALLBACK[kind] if cols % _K_BLOCK else kind


def encode(array: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """float32 rows -> GGUF blocks of qtype (uint8 [rows, bytes])."""
    if qtype == T.Q4_K:
        return quantize_q4_k(array)[0]
    if qtype == T.Q6_K:
        return quantize_q6_k(array)[0]
    return quantize(array, qtype)


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of testing_gguf.permute (llama.cpp's Q/K row order -> transformers')."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def smollm2_weights() -> tuple[dict, Weights]:
    """(config.json dict, float32 weights in transformers' naming) of the default GGUF."""
    gguf = GGUFFile(default_gguf_path())
    config = gguf.hf_config()
    layers = config["num_hidden_layers"]
    names = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
    }
    parts = ["input_layernorm", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj"]
    parts += ["mlp.down_proj"] + [f"self_attn.{p}_proj" for p in "qkvo"]
    for i in range(layers):
        for part in parts:
            hf_name = f"model.layers.{i}.{part}.weight"
            names[gguf_tensor_name("llama", hf_name)] = hf_name
    heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
    weights: Weights = {}
    for tensor in GGUFReader(str(default_gguf_path())).tensors:
        array = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        name = names[tensor.name]
        for proj, count in heads.items():
            if f".{proj}." in name:
                array = _unpermute(array, count)
        weights[name] = torch.from_numpy(np.ascontiguousarray(array))
    return config, weights


def write_hf_dir(path: Path, config: dict, weights: Weights) -> Path:
    """An HF directory: config.json, bf16 model.safetensors, SmolLM2's tokenizer files."""
    path.mkdir(parents=True, exist_ok=True)
    gguf = GGUFFile(default_gguf_path())
    save_file(
        {k: v.bfloat16().contiguous() for k, v in weights.items()}, str(path / "model.safetensors")
    )
    (path / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    gguf.tokenizer().save(str(path / "tokenizer.json"))
    tokenizer_config = {"eos_token": "<|im_end|>", "chat_template": gguf.chat_template()}
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return path


def write_gguf_mix(path: Path, mix: str, config: dict, weights: Weights) -> tuple[Weights, dict]:
    """Write weights as a GGUF file in `mix`; returns (the float32 weights the file holds,
    decoded by gguf's dequantizer, in transformers' naming; {type name: tensor count})."""
    meta = {k: v for k, v in GGUFFile(default_gguf_path()).meta.items()}
    meta.pop("general.file_type", None)
    heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
    floats, raw, held, counts = {}, {}, {}, {}
    for name, tensor in weights.items():
        array, gguf_name = tensor.numpy(), gguf_tensor_name("llama", name)
        if array.ndim == 1:
            floats[gguf_name], held[name] = array, tensor
            continue
        qtype = mix_type(mix, name, array.shape[1], config["num_hidden_layers"])
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
        blocks = encode(array, qtype)  # rows are whole blocks: permuting them commutes
        held[name] = torch.from_numpy(dequantize(blocks, qtype).reshape(array.shape))
        for proj, count in heads.items():
            if f".{proj}." in name:
                blocks = permute(blocks, count)
        raw[gguf_name] = (np.ascontiguousarray(blocks), qtype)
    write_gguf(path, "llama", meta, floats, raw=raw)
    return held, counts


def grid_weights(weights: Weights, make: Callable) -> Weights:
    """The float32 weights `--quantize` serves from an HF directory holding `weights` in
    bf16: every layer linear on make's grid (quant/formats.py), the rest bf16-rounded."""
    out = {}
    for name, w in weights.items():
        w16 = w.bfloat16()
        linear = w.dim() == 2 and "embed_tokens" not in name
        out[name] = make(w16).dequantize() if linear else w16.float()
    return out


def reference_picks(model, weights: Mapping[str, torch.Tensor], ids: list[int]) -> torch.Tensor:
    """Greedy picks at every position of ids by a transformers model holding weights."""
    state = dict(weights)
    if getattr(model.config, "tie_word_embeddings", False):
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].argmax(-1)


def served_picks(bundle: ModelBundle, ids: list[int], path: str = "plan") -> torch.Tensor:
    """Greedy picks at every position of ids, teacher-forced in one pass through the paged
    cache. path "plan": group-format linears as the machine's plan runs len(ids) rows (the
    tiles path, as in a prefill); "kernel": every row through the decode kernel, which
    computes each row exactly as a decode step of that token would (rows are independent)."""
    blocks = -(-len(ids) // 16)
    cache = KVCache(bundle.config, blocks + 1, 16, bundle.dtype, bundle.device)
    table = [list(range(1, blocks + 1))]
    meta = AttentionMetadata.build([len(ids)], [len(ids)], table, 16, bundle.device)
    if path == "kernel":  # this process only, restored below
        kernels.plan = lambda: kernels.Plan(_PLAN().features, 1 << 30)
    try:
        hidden = bundle.model(torch.tensor(ids), torch.arange(len(ids)), cache, meta)
        return bundle.model.compute_logits(hidden).argmax(-1)
    finally:
        kernels.plan = _PLAN
