"""Model code for infer: the decoder families (models/), loaders, paged attention, sampling."""

from .config import ModelConfig
from .errors import ModelLoadError
from .kv_cache import KVCache
from .loader import ModelBundle, load_model
from .metadata import AttentionMetadata
from .models.decoder import CausalLM
from .sampler import SampleOutput, Sampler, make_generator

__version__ = "0.1.0"

__all__ = [
    "AttentionMetadata",
    "CausalLM",
    "KVCache",
    "ModelBundle",
    "ModelConfig",
    "ModelLoadError",
    "SampleOutput",
    "Sampler",
    "load_model",
    "make_generator",
]
