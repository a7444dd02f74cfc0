#!/usr/bin/env bash
# Runs tests/test_hub.py against the oldest huggingface-hub that pyproject.toml allows, so the
# declared floor is one the code really works with. A throwaway venv sees the already installed
# packages (--system-site-packages) and gets exactly that huggingface-hub version on top.
#   bash tests/floor/run_floor.sh            # the floor from pyproject.toml
#   bash tests/floor/run_floor.sh 0.36.2     # any other version, e.g. to show one below fails
set -euo pipefail
cd "$(dirname "$0")/../.."
floor="${1:-$(sed -nE 's/^[[:space:]]*"huggingface-hub>=([0-9][0-9.]*)".*/\1/p' pyproject.toml)}"
if [ -z "$floor" ]; then
    echo "run_floor: no \"huggingface-hub>=X\" line in pyproject.toml" >&2
    exit 1
fi
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m venv --system-site-packages "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "huggingface-hub==$floor"
"$work/venv/bin/python" - "$floor" <<'PY'
import sys

import huggingface_hub

assert huggingface_hub.__version__ == sys.argv[1], (huggingface_hub.__version__, sys.argv[1])
print(f"floor check: huggingface_hub {huggingface_hub.__version__} from {huggingface_hub.__file__}")
PY
# The fake Hub runs larsr in subprocesses with PYTHONPATH=<repo>; the venv's python runs them.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_hub.py
