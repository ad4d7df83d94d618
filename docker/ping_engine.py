"""Container health check of infer-scheduler: exit 0 iff the engine answers a Ping.

Usage: python ping_engine.py [ENDPOINT] [TIMEOUT_S]
(default endpoint tcp://127.0.0.1:5555, default timeout 3 s). Connects a
ZeroMQ DEALER, sends one Ping and waits for the Pong with the same id.
"""

from __future__ import annotations

import sys
import time
import uuid

import zmq

from infer_protocol import Ping, Pong, ProtocolError, decode, encode


def ping(endpoint: str, timeout_s: float) -> bool:
    """True when a Pong for our Ping arrives within timeout_s."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        request_id = f"healthcheck-{uuid.uuid4().hex}"
        sock.send(encode(Ping(request_id=request_id)))
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not sock.poll(int(left * 1000)):
                break
            frames = sock.recv_multipart()
            try:
                message = decode(frames[-1])
            except ProtocolError:
                continue
            if isinstance(message, Pong) and message.request_id == request_id:
                return True
        return False
    finally:
        sock.close()
        context.term()


def main(argv: list[str]) -> int:
    endpoint = argv[1] if len(argv) > 1 else "tcp://127.0.0.1:5555"
    timeout_s = float(argv[2]) if len(argv) > 2 else 3.0
    if ping(endpoint, timeout_s):
        return 0
    print(f"engine at {endpoint} did not answer a ping within {timeout_s:g} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
