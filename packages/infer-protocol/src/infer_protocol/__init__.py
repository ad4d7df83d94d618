"""Messages shared by the infer gateway and engine, and their wire codec.

Public API: `encode(msg) -> bytes`, `decode(data) -> Message`,
`ProtocolError`, `PROTOCOL_VERSION`, and the message classes.
"""

from .codec import MAX_FRAME_BYTES, PROTOCOL_VERSION, ProtocolError, decode, encode
from .messages import (
    CONSTRAINT_KINDS,
    ERROR_CODES,
    FINISH_REASONS,
    MESSAGE_TYPES,
    AbortRequest,
    CacheStats,
    Constraint,
    EngineMetrics,
    EngineStats,
    GenerateRequest,
    KvStats,
    Message,
    MetricsQuery,
    ModelInfo,
    ModelInfoQuery,
    Ping,
    Pong,
    RequestError,
    RequestTiming,
    SamplingParams,
    TokenDelta,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "ERROR_CODES",
    "FINISH_REASONS",
    "MAX_FRAME_BYTES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "AbortRequest",
    "CONSTRAINT_KINDS",
    "CacheStats",
    "Constraint",
    "EngineMetrics",
    "EngineStats",
    "GenerateRequest",
    "KvStats",
    "Message",
    "MetricsQuery",
    "ModelInfo",
    "ModelInfoQuery",
    "Ping",
    "Pong",
    "ProtocolError",
    "RequestError",
    "RequestTiming",
    "SamplingParams",
    "TokenDelta",
    "Usage",
    "decode",
    "encode",
]
