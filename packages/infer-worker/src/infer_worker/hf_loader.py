"""Read a Hugging Face model directory: config.json, *.safetensors, tokenizer files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from tokenizers import Tokenizer

from .config import ModelConfig, config_from_hf
from .errors import ModelLoadError
from .special_tokens import stop_token_ids


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelLoadError(str(path), f"cannot read file ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(str(path), f"invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(str(path), "expected a JSON object")
    return data


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json spells special tokens as a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class HFDirectory:
    """A transformers-style model directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ModelLoadError(str(config_path), "missing config.json in the model directory")
        self.raw_config = _read_json(config_path)
        self.config_source = str(config_path)
        tok_path = path / "tokenizer_config.json"
        self.tokenizer_config = _read_json(tok_path) if tok_path.is_file() else {}

    def tokenizer(self) -> Tokenizer:
        path = self.path / "tokenizer.json"
        if not path.is_file():
            raise ModelLoadError(str(path), "missing tokenizer.json in the model directory")
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise ModelLoadError(str(path), f"cannot parse tokenizer ({exc})") from None

    def chat_template(self) -> str | None:
        jinja = self.path / "chat_template.jinja"
        if jinja.is_file():
            return jinja.read_text(encoding="utf-8")
        template = self.tokenizer_config.get("chat_template")
        if isinstance(template, list):  # named templates: take "default"
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        return template if isinstance(template, str) else None

    def config(self, tokenizer: Tokenizer) -> ModelConfig:
        config = config_from_hf(self.raw_config, self.config_source)
        declared: list[int | None] = list(config.eos_token_ids)
        gen_path = self.path / "generation_config.json"
        if gen_path.is_file():
            gen = _read_json(gen_path).get("eos_token_id")
            declared.extend(gen if isinstance(gen, list) else [gen])
        tc = self.tokenizer_config
        config.bos_token = _token_text(tc.get("bos_token"))
        config.eos_token = _token_text(tc.get("eos_token"))
        if config.eos_token is not None:
            declared.append(tokenizer.token_to_id(config.eos_token))
        if config.bos_token is not None and config.bos_token_id is None:
            config.bos_token_id = tokenizer.token_to_id(config.bos_token)
        if config.bos_token is None and config.bos_token_id is not None:
            config.bos_token = tokenizer.id_to_token(config.bos_token_id)
        if config.eos_token is None and declared and declared[0] is not None:
            config.eos_token = tokenizer.id_to_token(int(declared[0]))
        config.eos_token_ids = stop_token_ids(tokenizer, declared)
        config.add_bos_token = bool(tc.get("add_bos_token", False))
        return config

    def shard_files(self) -> list[Path]:
        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ModelLoadError(str(index), "weight_map is missing or empty")
            files = [self.path / name for name in dict.fromkeys(weight_map.values())]
        else:
            files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise ModelLoadError(str(self.path), "no *.safetensors weights in the model directory")
        for f in files:
            if not f.is_file():
                raise ModelLoadError(str(f), "weight shard listed in the index is missing")
        return files

    def weights(
        self, config: ModelConfig, dtype: torch.dtype
    ) -> Iterator[tuple[str, torch.Tensor]]:
        for path in self.shard_files():
            try:
                handle = safe_open(str(path), framework="pt")
            except Exception as exc:  # safetensors raises its own error types
                raise ModelLoadError(str(path), f"cannot read safetensors ({exc})") from None
            with handle:
                for name in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                    yield name, handle.get_tensor(name).to(dtype)
