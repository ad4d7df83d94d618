"""The infer gateway: an OpenAI-compatible HTTP front for the engine."""

__version__ = "0.1.0"
