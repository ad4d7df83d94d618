"""The infer engine: continuous batching over a paged KV cache with a radix prefix cache."""

__version__ = "0.1.0"
