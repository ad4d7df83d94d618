"""Model families over shared layers (the layout vLLM and nano-vllm use).

Interface:
- `ModelConfig.from_hf(raw: dict, source: str) -> ModelConfig` (config.py, implemented in
  registry.parse_hf_config) parses an HF config.json dict, keyed on transformers'
  configuration_*.py names; the family is raw["architectures"][0]. Whatever would change
  the math and is not implemented raises ModelLoadError naming the field. GGUF metadata
  is converted to such a dict first, so both formats share one parser.
- `build_model(config) -> CausalLM` builds the family's model; `load_hf_weights` fills it
  from (HF name, tensor) pairs.
- One forward definition: layers call step.linear / step.rope / step.attend (step.py), so
  eager (EagerStep) and the compiled decode graph (decode_graph.GraphStep) run the same
  layer code on CPU and CUDA.

Files: layers.py (Linear with its weight formats, RMSNorm, activations, GatedMLP),
rotary.py, attention.py (the attention front with per-layer window / soft-cap / scale),
decoder.py (DecoderLayer, CausalLM), weights.py, hf_config.py (common fields and
refusals), registry.py, and one module per family: llama.py, mistral.py, qwen2.py,
qwen3.py.
"""

from .decoder import CausalLM, DecoderLayer
from .layers import Linear, RMSNorm
from .registry import build_model, family_for, parse_hf_config

__all__ = [
    "CausalLM",
    "DecoderLayer",
    "Linear",
    "RMSNorm",
    "build_model",
    "family_for",
    "parse_hf_config",
]
