# syntax=docker/dockerfile:1
# infer-server: the OpenAI-compatible HTTP gateway. Slim Python, no torch.
#
# Build from the repository root:
#   docker build -f docker/server.Dockerfile -t infer-server .
# Run (the engine listening on tcp://scheduler:5555):
#   docker run -p 8000:8000 -e ENGINE_ENDPOINT=tcp://scheduler:5555 infer-server
# (a plaintext engine link on a private network; keys: --curve-secret-key and
# --curve-server-key, see docs/deployment.md)

FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY packages ./packages
# Only the gateway and what it imports (infer-protocol, starlette, hypercorn, pyzmq, ...).
RUN uv sync --frozen --no-dev --no-editable --package infer-server

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app infer
COPY --from=build /app/.venv /app/.venv
COPY docker/ready_check.py /app/ready_check.py
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    ENGINE_ENDPOINT=tcp://scheduler:5555 \
    LOG_LEVEL=info
USER infer
WORKDIR /app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/ready_check.py"]
ENTRYPOINT ["infer-server"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--insecure"]
