#!/usr/bin/env bash
# Build (here, with network) the wheel bundle that scripts/gpu_check.sh installs on an
# offline Python 3.12 GPU machine that already has CUDA torch + transformers but no registry.
#
#   scripts/gpu_bundle.sh [OUT]      # default OUT: gpu_bundle/ (git-ignored); ~45-60 MB
#
# What goes in: Ray 2.60 (cp312 manylinux wheel, repacked without ray/jars, ray/rllib and the
# dashboard's web build: none is used by soaes' training), DeepSpeed 0.19.8 as a pure-Python
# wheel (DS_BUILD_OPS=0: ops JIT-compile on the GPU machine if ever needed), the soaes wheel
# itself, and the small pure/cp312 packages Ray core, Ray Train, DeepSpeed and soaes' configs
# need that a torch + transformers machine usually lacks. pyarrow/pandas are NOT bundled
# (40+ MB; present wherever `datasets` is installed): gpu_check.sh says so if they are missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/gpu_bundle}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
MAX_MB="${GPU_BUNDLE_MAX_MB:-60}"
RAY_VERSION=2.60.0
DS_VERSION=0.19.8
rm -rf "$OUT" && mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "== binary wheels for CPython 3.12 manylinux x86_64"
"$PY" -m pip download -q --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --no-deps -d "$WORK/raw" \
    "ray==$RAY_VERSION" \
    "pydantic>=2.7,<3" "pydantic-core" typing-inspection annotated-types typing-extensions \
    jsonschema jsonschema-specifications referencing rpds-py attrs \
    tensorboardX hjson datasketch \
    "click>=7" "msgpack>=1,<2" "protobuf>=3.20.3" py-cpuinfo einops ninja psutil \
    pytest pluggy iniconfig pytest-timeout

echo "== pydantic-core must match pydantic: re-fetch the version pydantic pins"
PYD="$(ls "$WORK"/raw/pydantic-2*.whl)"
CORE_PIN="$(unzip -p "$PYD" '*/METADATA' | sed -n 's/^Requires-Dist: pydantic-core==\([0-9.]*\).*/\1/p')"
rm -f "$WORK"/raw/pydantic_core-*.whl
"$PY" -m pip download -q --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --no-deps -d "$WORK/raw" \
    "pydantic-core==$CORE_PIN"

echo "== Ray without jars/, rllib/, dashboard/client/build/"
"$PY" - "$WORK/raw" "$OUT" <<'PYEOF'
import base64, csv, glob, hashlib, io, os, shutil, sys, zipfile
raw, out = sys.argv[1], sys.argv[2]
DROP = ("ray/jars/", "ray/rllib/", "ray/dashboard/client/build/")
for whl in glob.glob(os.path.join(raw, "*.whl")):
    dst = os.path.join(out, os.path.basename(whl))
    if not os.path.basename(whl).startswith("ray-"):
        shutil.copy(whl, dst)
        continue
    with zipfile.ZipFile(whl) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        record = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
        kept = [n for n in zin.namelist() if not n.startswith(DROP) and n != record]
        for n in kept:
            zout.writestr(zin.getinfo(n), zin.read(n))
        rows = [r for r in csv.reader(io.StringIO(zin.read(record).decode())) if r and not r[0].startswith(DROP)]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        zout.writestr(record, buf.getvalue())
    print(f"ray: {os.path.getsize(whl) / 2**20:.1f} MB -> {os.path.getsize(dst) / 2**20:.1f} MB")
PYEOF

echo "== DeepSpeed $DS_VERSION as a py3 wheel without compiled ops"
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" "deepspeed==$DS_VERSION"

echo "== soaes itself"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" "$ROOT"

rm -rf "$ROOT/build"  # setuptools' build folder of the soaes wheel
ls -la "$OUT"
TOTAL_MB=$(du -sm "$OUT" | cut -f1)
echo "bundle: $OUT, ${TOTAL_MB} MB (limit ${MAX_MB} MB)"
[ "$TOTAL_MB" -le "$MAX_MB" ] || { echo "bundle over ${MAX_MB} MB" >&2; exit 1; }
