# syntax=docker/dockerfile:1
# infer-scheduler: the engine. PyTorch from PyPI (its Linux wheels bundle the
# CUDA runtime, so a plain Python base image runs on the GPU when the NVIDIA
# container toolkit passes one in; without a GPU it runs on the CPU).
# OMP_WAIT_POLICY=PASSIVE + GOMP_SPINCOUNT=10000: idle OpenMP threads spin ~0.1 ms,
# then sleep, so CPU steps stay fast when other containers share the cores.
#
# Build from the repository root:
#   docker build -f docker/scheduler.Dockerfile -t infer-scheduler .
# Run on a GPU with the default model (shipped in the image):
#   docker run --gpus all -p 127.0.0.1:5555:5555 infer-scheduler
# Run a model of your own from the /models volume:
#   docker run --gpus all -v ./models:/models infer-scheduler \
#       --model /models/Llama-3.2-1B-Instruct --endpoint tcp://0.0.0.0:5555 --insecure

FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY packages ./packages
# The engine, the model code, torch (CUDA build) and the default model's GGUF.
RUN uv sync --frozen --no-dev --no-editable --package infer-scheduler

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app infer \
    && mkdir -p /models && chown infer /models
COPY --from=build /app/.venv /app/.venv
COPY docker/ping_engine.py /app/ping_engine.py
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ZMQ_ENDPOINT=tcp://0.0.0.0:5555 \
    OMP_WAIT_POLICY=PASSIVE \
    GOMP_SPINCOUNT=10000 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER infer
WORKDIR /app
VOLUME ["/models"]
EXPOSE 5555
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "/app/ping_engine.py", "tcp://127.0.0.1:5555"]
ENTRYPOINT ["infer-scheduler"]
# plaintext on every interface of the container: for a private network only
# (keys: --curve-secret-key and --curve-clients, see docs/deployment.md)
CMD ["--model", "smollm2", "--endpoint", "tcp://0.0.0.0:5555", "--insecure", "--device", "auto"]
