"""The runtime package type-checks clean: mypy over larsr_cli/ with the settings in pyproject.toml.

Run as a test so the README's one test command (and CI) covers it; a new error fails here with
mypy's own lines in the message.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_larsr_cli_is_mypy_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is part of the [test] extra")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
