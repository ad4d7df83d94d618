"""Quantized weights kept in the checkpoint's precision: formats, GGUF repacking, kernels."""
