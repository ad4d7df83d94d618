"""MessagePack envelopes: {"v": version, "t": type tag, "d": fields}.

`decode` raises ProtocolError, and only ProtocolError, for anything that is
not a valid message of PROTOCOL_VERSION. The error says whose it is when
that can be read: `request_id` for a well-formed envelope of this version
whose body names one, `peer_version` for an envelope of another version
(so both ends can tell a version mismatch from a bad frame).
"""

from __future__ import annotations

from typing import Any

import attrs
import ormsgpack

from .checks import structure
from .messages import MESSAGE_TYPES, Message

PROTOCOL_VERSION = 3  # 2: GenerateRequest.constraint; 3: Pong engine_id, epoch, kv_use
MAX_FRAME_BYTES = 64 * 1024 * 1024

_BY_TAG: dict[str, type] = {cls.TAG: cls for cls in MESSAGE_TYPES}
_ENVELOPE_KEYS = {"v", "t", "d"}


class ProtocolError(ValueError):
    """A frame that is not a valid message of this protocol version.

    `request_id` is the frame's request id when it could be read ("" when
    not); `peer_version` the version an envelope declared when it is not
    PROTOCOL_VERSION (None when it is, or when there was no envelope).
    """

    def __init__(self, message: str, *, request_id: str = "", peer_version: int | None = None):
        super().__init__(message)
        self.request_id = request_id
        self.peer_version = peer_version


def _request_id_of(body: dict) -> str:
    """The body's request id if it is a non-empty string, else ""."""
    value = body.get("request_id")
    return value if isinstance(value, str) else ""


def _unstructure(value: Any) -> Any:
    if attrs.has(type(value)):
        return {f.name: _unstructure(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, list | tuple):
        return [_unstructure(v) for v in value]
    if isinstance(value, dict):
        return {k: _unstructure(v) for k, v in value.items()}
    return value


def _check_no_trailing_bytes(envelope: dict, size: int) -> None:
    """ormsgpack ignores bytes after the first object; a frame must be one object.

    Frames are written by `encode`, whose output is canonical: re-packing the
    decoded envelope gives the same length, so a longer frame has garbage.
    """
    try:
        canonical = len(ormsgpack.packb(envelope, option=ormsgpack.OPT_NON_STR_KEYS))
    except Exception:  # values ormsgpack reads but cannot write back are not ours
        raise ProtocolError("frame holds values this protocol never writes") from None
    if size > canonical:
        raise ProtocolError(f"frame is not valid MessagePack: {size - canonical} trailing bytes")


def encode(msg: Message) -> bytes:
    """Serialize a message into one frame."""
    tag = getattr(type(msg), "TAG", None)
    if tag not in _BY_TAG or _BY_TAG[tag] is not type(msg):
        raise TypeError(f"not a protocol message: {type(msg).__name__}")
    envelope = {"v": PROTOCOL_VERSION, "t": tag, "d": _unstructure(msg)}
    return ormsgpack.packb(envelope, option=ormsgpack.OPT_NON_STR_KEYS)


def decode(data: bytes) -> Message:
    """Parse one frame; raise ProtocolError saying what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"frame must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ProtocolError("empty frame")
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        envelope = ormsgpack.unpackb(bytes(data), option=ormsgpack.OPT_NON_STR_KEYS)
    except Exception as exc:  # ormsgpack raises MsgpackDecodeError (a ValueError), keep it total
        raise ProtocolError(f"frame is not valid MessagePack: {exc}") from None
    if not isinstance(envelope, dict):
        raise ProtocolError(f"frame is not an envelope map but {type(envelope).__name__}")
    _check_no_trailing_bytes(envelope, len(data))
    if set(envelope) != _ENVELOPE_KEYS:
        raise ProtocolError(
            f"envelope must have exactly keys v, t, d; got {sorted(map(str, envelope))}"
        )
    version = envelope["v"]
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        peer = version if isinstance(version, int) and not isinstance(version, bool) else None
        raise ProtocolError(
            f"protocol version {version!r} is not supported (expected {PROTOCOL_VERSION})",
            peer_version=peer,
        )
    tag = envelope["t"]
    if not isinstance(tag, str) or tag not in _BY_TAG:
        raise ProtocolError(f"unknown message type {tag!r}")
    body = envelope["d"]
    if not isinstance(body, dict):
        raise ProtocolError(f"{tag}: body is not a map but {type(body).__name__}")
    try:
        return structure(_BY_TAG[tag], body)
    except (TypeError, ValueError, KeyError, OverflowError, RecursionError) as exc:
        raise ProtocolError(f"{tag}: {exc}", request_id=_request_id_of(body)) from None
