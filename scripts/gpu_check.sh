#!/usr/bin/env bash
# Offline GPU check of the training stack, on a Python 3.12 machine with CUDA torch +
# transformers and no package registry (build the bundle elsewhere: scripts/gpu_bundle.sh).
#
#   scripts/gpu_check.sh [BUNDLE] [OUT]     # defaults: gpu_bundle/  runs/gpu_check/
#
# Installs the bundle into a temporary folder (pip --no-index --no-deps --target; nothing
# touches the machine's site-packages), then runs, each step logged to OUT/<step>.log and
# its status to OUT/status.txt:
#   1. the GPU tests (pytest -m gpu; skipped with a message when pytest is absent);
#   2. tiny CPT, progressive SFT and distillation on one GPU in bf16 (the data pipelines first;
#      distillation without vLLM uses the CPT rows and an offline teacher, acceptance skipped);
#   3. soaes bench train --device cuda -> OUT/bench_train_cuda.json.
# Needs the soaes asset cache (law / People's Daily / chat corpora, SmolLM2 for the bench):
# SOAES_CACHE (default ~/.cache/soaes), filled by `make assets` or copied from a machine that has it.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="$(cd "${1:-$ROOT/gpu_bundle}" && pwd)"
OUT="$(mkdir -p "${2:-$ROOT/runs/gpu_check}" && cd "${2:-$ROOT/runs/gpu_check}" && pwd)"
PY="${PYTHON:-python3}"
SITE="$(mktemp -d /tmp/soaes_gpu_site.XXXXXX)"
trap 'rm -rf "$SITE"' EXIT
cd "$ROOT"
: > "$OUT/status.txt"

note() { echo "$*" | tee -a "$OUT/status.txt"; }
step() {  # step NAME CMD...: run, log, record ok/FAILED
    local name="$1"; shift
    echo "== $name"
    if "$@" > "$OUT/$name.log" 2>&1; then note "ok      $name"; else note "FAILED  $name (see $OUT/$name.log)"; fi
}

echo "== installing $BUNDLE into $SITE"
"$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$BUNDLE"/*.whl || exit 1
export PYTHONPATH="$ROOT/platform/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$OUT/torch_extensions}"
export TOKENIZERS_PARALLELISM=false RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0

"$PY" - <<'PYEOF' | tee -a "$OUT/status.txt" || exit 1
import importlib, sys
import torch
assert torch.cuda.is_available(), "no CUDA device: this check needs a GPU"
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
missing = [m for m in ("transformers", "pyarrow", "pandas", "ray", "deepspeed", "pydantic", "soaes")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing modules (not in the bundle; install them from a local mirror): {missing}")
PYEOF
HAVE_VLLM=$("$PY" -c "import importlib.util as u; print(int(u.find_spec('vllm') is not None))")
HAVE_PYTEST=$("$PY" -c "import importlib.util as u; print(int(u.find_spec('pytest') is not None))")
SOAES=("$PY" -m soaes.cli)
GPU=(scaling.use_gpu=true scaling.num_workers=1 deepspeed.precision=bf16 model.dtype=bfloat16)

if [ "$HAVE_PYTEST" = 1 ]; then
    step pytest_gpu "$PY" -m pytest -q -m gpu tests -p no:cacheprovider
else
    note "skipped pytest_gpu: pytest is not installed"
fi

step data_cpt_tiny "${SOAES[@]}" run pipelines/data_cpt_tiny.yaml "output_dir=$OUT/data_cpt_tiny"
step cpt_tiny "${SOAES[@]}" run pipelines/cpt_tiny.yaml "${GPU[@]}" \
    "data_dir=$OUT/data_cpt_tiny" "output_dir=$OUT/cpt_tiny" max_steps=30
step data_sft_tiny "${SOAES[@]}" run pipelines/data_sft_tiny.yaml "output_dir=$OUT/data_sft_tiny"
step sft_progressive_tiny "${SOAES[@]}" run pipelines/sft_progressive_tiny.yaml "${GPU[@]}" \
    "data_dir=$OUT/data_sft_tiny" "output_dir=$OUT/sft_progressive_tiny" "model.path=$OUT/cpt_tiny/hf"

DISTILL=(run pipelines/distill_tiny.yaml scaling.use_gpu=true scaling.num_workers=1
         deepspeed.precision=bf16 target.dtype=bfloat16 "output_dir=$OUT/distill_tiny")
if [ "$HAVE_VLLM" = 1 ]; then
    step distill_tiny "${SOAES[@]}" "${DISTILL[@]}"
else
    note "vLLM absent: distillation on the CPT rows (no on-policy generation), acceptance skipped"
    step distill_tiny "${SOAES[@]}" "${DISTILL[@]}" data.onpolicy=null \
        "data.datasets=[{path: $OUT/data_cpt_tiny/train, max_rows: 400}]" acceptance=null
fi

step bench_train_cuda "${SOAES[@]}" bench train --device cuda \
    --work-dir "$OUT/bench_train" --json "$OUT/bench_train_cuda.json"
cat "$OUT/bench_train_cuda.log" | tail -8
echo "== summary ($OUT/status.txt)"
cat "$OUT/status.txt"
! grep -q FAILED "$OUT/status.txt"
