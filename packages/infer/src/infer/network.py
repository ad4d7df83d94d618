"""Small network helpers of the launcher: port checks, URLs, readiness probes."""

from __future__ import annotations

import errno
import socket

import httpx

_ANY_HOSTS = {"0.0.0.0", "", "::", "[::]"}


def port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound for listening, or None if it can.

    Binds with SO_REUSEADDR like the HTTP server does, so sockets lingering in
    TIME_WAIT do not count as "in use".
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        return f"cannot resolve host {host!r}: {exc.strerror}"
    family, socktype, proto, _, address = infos[0]
    with socket.socket(family, socktype, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
            sock.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def client_host(host: str) -> str:
    """The address a local client uses to reach a server bound to `host`."""
    if host in _ANY_HOSTS:
        return "127.0.0.1" if ":" not in host else "::1"
    return host


def base_url(host: str, port: int) -> str:
    """http://HOST:PORT as a local client reaches it (IPv6 in brackets)."""
    target = client_host(host)
    if ":" in target and not target.startswith("["):
        target = f"[{target}]"
    return f"http://{target}:{port}"


def is_ready(client: httpx.Client, url: str) -> bool:
    """True when GET url/ready answers 200."""
    try:
        return client.get(f"{url}/ready").status_code == 200
    except httpx.HTTPError:
        return False


def first_model(client: httpx.Client, url: str, api_key: str | None) -> str | None:
    """The first model id of GET url/v1/models, or None."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = client.get(f"{url}/v1/models", headers=headers)
        data = response.json().get("data") or []
        return str(data[0]["id"]) if data else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return None
