"""What the gateway knows about the served model, built from the engine's ModelInfo.

A `ServedModel` is immutable once built; a reconnect builds a new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer

from infer_protocol import ModelInfo

from .templates import ChatTemplate, TemplateError, builtin_for

log = logging.getLogger("infer_server")


class ServedModel:
    """Names, limits, tokenizer and chat template of the engine's model."""

    def __init__(
        self, info: ModelInfo, extra_names: Sequence[str] = (), template_override: str | None = None
    ):
        self.info = info
        names = list(info.served_model_names)
        for name in extra_names:
            if name not in names:
                names.append(name)
        self.names: list[str] = names
        self.context_length = info.context_length
        self.tokenizer = Tokenizer.from_str(info.tokenizer_json)
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        builtin = builtin_for(frozenset(vocab))
        source = template_override or info.chat_template or builtin
        try:
            self.template = ChatTemplate(source)
        except TemplateError:
            if template_override:
                raise
            log.warning("the model's chat template does not compile; using a built-in one")
            self.template = ChatTemplate(builtin)
        self.eos_token_ids = list(info.eos_token_ids)
        self.created = int(time.time())

    @property
    def default_name(self) -> str:
        return self.names[0]

    def render_chat(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        return self.template.render(
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.info.bos_token,
            eos_token=self.info.eos_token,
        )

    def encode_chat(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> list[int]:
        """Render the template and tokenize it; special tokens come from the template text."""
        text = self.render_chat(messages, add_generation_prompt)
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_prompt(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Tokenize a raw completion prompt, adding BOS when the model wants it (and the
        caller does not turn special tokens off)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        bos = self.info.bos_token_id
        if (
            add_special_tokens
            and self.info.add_bos_token
            and bos is not None
            and (not ids or ids[0] != bos)
        ):
            ids = [bos, *ids]
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        """The text of one token for logprobs (may contain U+FFFD for partial bytes)."""
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self.info.vocab_size or self.tokenizer.get_vocab_size(with_added_tokens=True)
