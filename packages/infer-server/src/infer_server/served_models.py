"""The models a gateway serves, by name, built from its engines' ModelInfo.

Invariants: one `ServedModel` per name; every engine that serves a name has
the same tokenizer, chat template and context length as the model kept for
it (an engine that differs while another live engine serves the name is
refused with `ModelConflict`, which names the model). A name stays known
once seen (its engines may be down: that is a 503/502, not a 404).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from infer_protocol import ModelInfo

from .errors import APIError
from .model import ServedModel


class ModelConflict(Exception):
    """An engine's model differs from the one already served under one of its names."""


def fingerprint(info: ModelInfo) -> str:
    """What engines serving one name must agree on: tokenizer, template, context."""
    digest = hashlib.sha256()
    for part in (info.tokenizer_json, info.chat_template or "", str(info.context_length)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class ServedModels:
    """Name -> ServedModel, in the order names were first seen."""

    def __init__(
        self,
        extra_names: Sequence[str] = (),
        template_override: str | None = None,
        tool_call_parser: str = "auto",
    ) -> None:
        self.extra_names = tuple(extra_names)
        self.template_override = template_override
        self.tool_call_parser = tool_call_parser
        self._by_name: dict[str, ServedModel] = {}
        self._prints: dict[str, str] = {}

    def names_of(self, info: ModelInfo) -> list[str]:
        return list(dict.fromkeys([*info.served_model_names, *self.extra_names]))

    def accept(self, info: ModelInfo, served_elsewhere: Callable[[str], bool]) -> ServedModel:
        """Build the model of an engine's ModelInfo and serve it under its names.

        `served_elsewhere(name)`: whether another live engine serves `name` now; only
        then does a different model under that name refuse this one (a lone engine
        that restarts with another model replaces it, as a single-engine gateway does).
        """
        key = fingerprint(info)
        for name in self.names_of(info):
            if self._prints.get(name, key) != key and served_elsewhere(name):
                raise ModelConflict(
                    f"the engine serves '{name}' with another tokenizer, chat template or "
                    "context length than the engine already serving it; refused"
                )
        model = ServedModel(info, self.extra_names, self.template_override, self.tool_call_parser)
        for name in model.names:
            self._by_name[name] = model
            self._prints[name] = key
        return model

    def get(self, name: str) -> ServedModel | None:
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def first(self) -> ServedModel | None:
        return next(iter(self._by_name.values()), None)

    def require(self, name: str) -> ServedModel:
        """The model served as `name`: 404 naming it and the served names when unknown."""
        model = self._by_name.get(name)
        if model is None:
            raise APIError(
                404,
                f"The model '{name}' does not exist; this server serves: {', '.join(self.names)}",
                param="model",
                code="model_not_found",
            )
        return model
