"""What the gateway knows about the served model, built from the engine's ModelInfo.

A `ServedModel` is immutable once built; a reconnect builds a new one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer

from infer_protocol import ModelInfo

from .offload import encode_ids
from .templates import ChatTemplate, TemplateError, builtin_for
from .tool_parsers import make_parser, parser_for_template
from .tool_prompt import for_template

log = logging.getLogger("infer_server")


class ServedModel:
    """Names, limits, tokenizer and chat template of the engine's model."""

    def __init__(
        self,
        info: ModelInfo,
        extra_names: Sequence[str] = (),
        template_override: str | None = None,
        tool_call_parser: str = "auto",
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
        if tool_call_parser == "auto":
            tool_call_parser = parser_for_template(self.template.source)
        self.tool_parser = make_parser(tool_call_parser)
        self.created = int(time.time())
        # with a byte-level tokenizer and no normalizer, no token covers more characters
        # than its vocabulary string has bytes: a cheap lower bound on a text's token count
        self._chars_per_token = (
            max(len(t.encode("utf-8")) for t in vocab) if _byte_level(info.tokenizer_json) else 0
        )

    @property
    def default_name(self) -> str:
        return self.names[0]

    def render_chat(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The prompt text; tools and tool messages go through `tool_prompt.for_template`."""
        messages, tools = for_template(self.template.source, messages, tools)
        return self.template.render(
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.info.bos_token,
            eos_token=self.info.eos_token,
            tools=tools,
        )

    def encode_chat(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Render the template and tokenize it; special tokens come from the template text."""
        return self.encode_rendered(self.render_chat(messages, add_generation_prompt, tools))

    def encode_rendered(self, text: str) -> list[int]:
        """Tokenize a rendered chat prompt (it holds its own special tokens)."""
        return encode_ids(self.tokenizer, text, None)

    def prompt_bos(self, add_special_tokens: bool = True) -> int | None:
        """The BOS id a raw prompt starts with, or None."""
        bos = self.info.bos_token_id
        return bos if add_special_tokens and self.info.add_bos_token else None

    def encode_prompt(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Tokenize a raw completion prompt, adding BOS when the model wants it (and the
        caller does not turn special tokens off)."""
        return encode_ids(self.tokenizer, text, self.prompt_bos(add_special_tokens))

    def min_tokens(self, text: str) -> int:
        """A lower bound on the tokens of `text`, found without tokenizing (0 if unknown)."""
        return len(text) // self._chars_per_token if self._chars_per_token else 0

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        """The text of one token for logprobs (may contain U+FFFD for partial bytes)."""
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self.info.vocab_size or self.tokenizer.get_vocab_size(with_added_tokens=True)


def _byte_level(tokenizer_json: str) -> bool:
    """Whether every byte is a token of its own: a ByteLevel pre-tokenizer, no normalizer."""
    spec = json.loads(tokenizer_json)
    pre = spec.get("pre_tokenizer") or {}
    kinds = [pre.get("type"), *(p.get("type") for p in pre.get("pretokenizers") or [])]
    return spec.get("normalizer") is None and "ByteLevel" in kinds
