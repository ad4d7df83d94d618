"""Model code for infer: Llama-family decoder, loaders, paged attention, sampling."""

__version__ = "0.1.0"
