"""The infer launcher: `infer serve`, `infer bench`, `infer chat`."""

__version__ = "0.1.0"
