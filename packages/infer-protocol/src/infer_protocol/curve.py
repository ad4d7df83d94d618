"""CurveZMQ for engines on other machines: key files, key loading, socket set-up.

Invariants:
- key files are zmq.auth certificates (`NAME.key` holds the Z85 public key,
  `NAME.key_secret` the public and the secret key); a secret file is created
  owner-only (0600) and never readable by others in between;
- an engine with a secret key accepts only gateways whose public key is
  allowed (its clients directory, re-read at each handshake so keys can be
  added or removed while it runs, or CURVE_CLIENT_KEYS); others fail the
  handshake and never reach its loop;
- a plaintext endpoint that other machines can reach is refused unless the
  operator says `--insecure` (`plaintext_refusal`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from .defaults import is_loopback

log = logging.getLogger("infer_protocol.curve")
KEY_CHARS = 40  # a 32-byte Curve25519 key in Z85
MAX_REPORTED_KEYS = 256  # denied keys logged once each, up to this many


class CurveError(ValueError):
    """A key file or key variable that cannot be used (the message names it)."""


@dataclass(frozen=True)
class ServerKeys:
    """The engine's key pair and where its allowed gateway keys come from."""

    public: bytes
    secret: bytes
    clients_dir: Path | None = None
    client_keys: frozenset[bytes] = frozenset()

    def allowed(self) -> frozenset[bytes]:
        """The allowed client public keys now (the directory is read each time)."""
        if self.clients_dir is None:
            return self.client_keys
        try:
            found = zmq.auth.load_certificates(self.clients_dir)
        except (OSError, ValueError) as exc:
            log.error("cannot read the allowed gateway keys in %s: %s", self.clients_dir, exc)
            found = {}
        return self.client_keys | frozenset(found)


@dataclass(frozen=True)
class ClientKeys:
    """The gateway's key pair and the engine's public key."""

    public: bytes
    secret: bytes
    server: bytes


def write_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (0644) and NAME.key_secret (0600) into `directory` (created 0700).

    Refuses to overwrite: raises FileExistsError naming the file.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise FileExistsError(f"{path} exists (remove it first or choose another --name)")
    old = os.umask(0o077)
    try:
        made = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    assert (Path(made[0]), Path(made[1])) == (public, secret)
    public.chmod(0o644)
    secret.chmod(0o600)
    return public, secret


def z85_key(text: str | bytes, what: str) -> bytes:
    """A Z85 Curve key (40 characters), checked; CurveError naming `what` otherwise."""
    key = text.strip().encode() if isinstance(text, str) else text.strip()
    try:
        valid = len(key) == KEY_CHARS and len(z85.decode(key)) == 32
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise CurveError(f"{what} is not a Z85 Curve key ({KEY_CHARS} characters)")
    return key


def read_key_file(path: str | Path, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) from a key file; `secret` requires the secret half."""
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveError(f"cannot read the key file {path}: {exc}") from None
    z85_key(public, f"the public key in {path}")
    if secret:
        if secret_key is None:
            raise CurveError(f"{path} holds no secret key (give the .key_secret file)")
        z85_key(secret_key, f"the secret key in {path}")
    return public, secret_key


def _own_pair(secret_file: str | None, env: Mapping[str, str]) -> tuple[bytes, bytes] | None:
    if secret_file:
        public, secret = read_key_file(secret_file, secret=True)
        assert secret is not None
        return public, secret
    if env.get("CURVE_SECRET_KEY"):
        secret = z85_key(env["CURVE_SECRET_KEY"], "CURVE_SECRET_KEY")
        return zmq.curve_public(secret), secret
    return None


def server_keys(
    secret_file: str | None, clients_dir: str | None, env: Mapping[str, str]
) -> ServerKeys | None:
    """The engine's keys from its flags (files) or env; None when none are given."""
    pair = _own_pair(secret_file, env)
    listed = [k for k in env.get("CURVE_CLIENT_KEYS", "").split(",") if k.strip()]
    clients = frozenset(z85_key(k, "a key of CURVE_CLIENT_KEYS") for k in listed)
    if pair is None:
        if clients_dir or clients:
            raise CurveError(
                "allowed gateway keys were given without the engine's own key: "
                "add --curve-secret-key FILE (or CURVE_SECRET_KEY)"
            )
        return None
    if clients_dir and not Path(clients_dir).is_dir():
        raise CurveError(f"--curve-clients {clients_dir} is not a directory")
    if not clients_dir and not clients:
        raise CurveError(
            "--curve-secret-key needs the gateways' public keys: --curve-clients DIR "
            "(their .key files) or CURVE_CLIENT_KEYS"
        )
    return ServerKeys(pair[0], pair[1], Path(clients_dir) if clients_dir else None, clients)


def client_keys(
    secret_file: str | None, server_key_file: str | None, env: Mapping[str, str]
) -> ClientKeys | None:
    """The gateway's keys from its flags (files) or env; None when none are given."""
    pair = _own_pair(secret_file, env)
    if server_key_file:
        server: bytes | None = read_key_file(server_key_file, secret=False)[0]
    elif env.get("CURVE_SERVER_KEY"):
        server = z85_key(env["CURVE_SERVER_KEY"], "CURVE_SERVER_KEY")
    else:
        server = None
    if pair is None and server is None:
        return None
    if pair is None:
        raise CurveError(
            "--curve-server-key needs this gateway's own key: --curve-secret-key FILE "
            "(or CURVE_SECRET_KEY)"
        )
    if server is None:
        raise CurveError(
            "--curve-secret-key needs the engine's public key: --curve-server-key FILE "
            "(or CURVE_SERVER_KEY)"
        )
    return ClientKeys(pair[0], pair[1], server)


class _AllowedKeys:
    """zmq.auth's credentials provider: is this client key allowed? Logs each denial once."""

    def __init__(self, keys: ServerKeys) -> None:
        self._keys = keys
        self._reported: set[bytes] = set()

    def callback(self, _domain: str, key: bytes) -> bool:
        if key in self._keys.allowed():
            return True
        if key not in self._reported and len(self._reported) < MAX_REPORTED_KEYS:
            self._reported.add(key)
            log.warning("refused a gateway whose public key %s is not allowed", key.decode())
        return False


def apply_server(sock: zmq.Socket, keys: ServerKeys) -> ThreadAuthenticator:
    """Make `sock` (not yet bound) a Curve server; returns the started authenticator
    (a ZAP handler thread on the socket's context), to be stopped before the context ends."""
    auth = ThreadAuthenticator(sock.context, log=logging.getLogger("infer_protocol.zap"))
    auth.start()
    auth.configure_curve_callback("*", _AllowedKeys(keys))
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
    return auth


def apply_client(sock: zmq.Socket, keys: ClientKeys) -> None:
    """Make `sock` (not yet connected) a Curve client of the engine with `keys.server`."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server


def endpoint_host(endpoint: str) -> str | None:
    """The host of a network endpoint (`tcp://H:P`, `tcp://src;H:P`), None for ipc/inproc."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme in ("ipc", "inproc"):
        return None
    rest = rest.rsplit(";", 1)[-1]  # a connect may name its source address first
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return host.strip("[]")


def plaintext_refusal(
    endpoints: str | Iterable[str], secured: bool, insecure: bool, flags: str
) -> str | None:
    """Why a plaintext endpoint reachable from other machines must not be used, or None.

    `flags` names the key flags of the process, for the message.
    """
    if secured or insecure:
        return None
    for endpoint in [endpoints] if isinstance(endpoints, str) else endpoints:
        host = endpoint_host(endpoint)
        if host is not None and not is_loopback(host):
            return (
                f"{endpoint} is plaintext on a non-loopback address: anyone who can reach it "
                f"can use the engine. Give {flags} (keys from `infer keys DIR`), or --insecure "
                "if the network is private"
            )
    return None


HANDSHAKE_FAILURES = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def handshake_failure(event: int, value: int, endpoint: str, secured: bool) -> str | None:
    """The /ready detail for a handshake the engine refused, else None (not about keys)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"the engine at {endpoint} did not accept this gateway's key (CurveZMQ)"
    if (
        event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    ):
        need = "does not use" if secured else "requires"
        return (
            f"the engine at {endpoint} did not accept this gateway: it {need} CurveZMQ "
            "(give both sides keys, or neither)"
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and secured:
        return (
            f"the engine at {endpoint} did not accept this gateway: the CurveZMQ handshake "
            "failed (is --curve-server-key the engine's public key?)"
        )
    return None
