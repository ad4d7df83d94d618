#!/usr/bin/env bash
# The CUDA check: run the CUDA tests, then the speed run, on one GPU machine.
#
# Here (the development machine), once:   benchmarks/gpu_check.sh --prepare
#   puts into .gpu/ (ignored by git, carried to the device): the wheels the
#   device image lacks (gguf, ormsgpack, pyzmq, for its Python 3.12) and
#   SmolLM2's tokenizer (the 93 MB default-model package cannot travel; the
#   tiny random test models only need its tokenizer).
# On the device (run tool, carry [".gpu"]):   bash benchmarks/gpu_check.sh
#   (about 4 minutes on an H200: speed run, CUDA tests, layer-by-layer accuracy)
#   logs and JSON go to $OUT; a short summary is printed last.
# Without a GPU the CUDA tests skip and the speed run uses a tiny model:
#   GPU_CHECK_LOCAL=1 benchmarks/gpu_check.sh   (uses `uv run`, no install)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p .gpu/whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .gpu/whl \
        gguf==0.19.0 ormsgpack==1.13.1 pyzmq==27.3.0 || exit 1
    uv run python -c "from infer_worker.testing import save_smollm2_tokenizer as s; s('.gpu/tokenizer')" || exit 1
    du -sh .gpu
    exit 0
fi

if [ -n "${GPU_CHECK_LOCAL:-}" ]; then
    PY="uv run python"
    BENCH_ARGS="--smoke --batches 1,4 --prompt-len 16 --new-tokens 8"
else
    PY=python3
    BENCH_ARGS=""
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .gpu/whl/*.whl || exit 1
    PYTHONPATH=/tmp/site:$(ls -d "$PWD"/packages/*/src | tr '\n' ':')
    export PYTHONPATH
fi
export INFER_TEST_TOKENIZER_DIR=$PWD/.gpu/tokenizer PYTHONUNBUFFERED=1
start=$(date +%s)

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
$PY - <<'EOF' 2>&1 | tee "$OUT/env.txt"
import importlib.metadata as md, sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
for name in ("triton", "transformers", "numpy", "tokenizers", "gguf", "ormsgpack"):
    try:
        __import__(name)
        print(name, md.version(name))
    except Exception as exc:
        print(name, "MISSING", exc)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, "SMs", p.multi_processor_count, "GiB", round(p.total_memory / 2**30, 1))
from infer_server.metrics import GpuProbe
print("nvml probe", GpuProbe().read())
EOF

echo "== speed run"
# shellcheck disable=SC2086
timeout 170 $PY benchmarks/gpu_bench.py --out "$OUT/bench.json" $BENCH_ARGS >"$OUT/bench.log" 2>&1
echo "bench exit $? after $(( $(date +%s) - start )) s"
grep -vE "Warning|warn\(" "$OUT/bench.log" | tail -22

echo "== CUDA tests"
XDIST=""
if $PY -c "import xdist" 2>/dev/null; then XDIST="-n 4 --dist loadfile"; fi
# -k: every test of test_scheduler_cuda.py, the test_cuda_* ones elsewhere, and the
# two load tests whose CUDA branch only runs on a GPU. The worker files come last: their
# `from conftest import ...` takes the conftest loaded last.
timeout 170 $PY -m pytest -q -p no:cacheprovider -o addopts="" --timeout 150 $XDIST \
    -k "cuda or auto_device or bad_dtype" -rfEs --durations=8 \
    tests/scheduler/test_scheduler_cuda.py tests/scheduler/test_scheduler_cuda_graphs.py \
    tests/worker/test_worker_attention.py tests/worker/test_worker_tiny_llama.py \
    tests/worker/test_worker_sampler.py tests/worker/test_worker_load_errors.py --junitxml="$OUT/pytest.xml" >"$OUT/pytest.log" 2>&1
echo "pytest exit $? after $(( $(date +%s) - start )) s"
grep -E "^(FAILED|ERROR|SKIPPED)|passed|failed|error|^[0-9.]+s " "$OUT/pytest.log" | tail -30

echo "== layer-by-layer accuracy against float32"
DIAG_ARGS=""
if [ -n "${GPU_CHECK_LOCAL:-}" ]; then DIAG_ARGS="--smoke"; fi
timeout 100 $PY benchmarks/gpu_diag.py --out "$OUT/diag.json" $DIAG_ARGS >"$OUT/diag.log" 2>&1
echo "diag exit $? after $(( $(date +%s) - start )) s"
grep -vE "Warning|warn\(" "$OUT/diag.log" | tail -6
