"""The one error a model load raises."""

from __future__ import annotations


class ModelLoadError(Exception):
    """A model could not be loaded; the message names the file and the problem."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
