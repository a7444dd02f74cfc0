"""Shared fixtures: a tiny randomly initialised model exported once per test session.

Tests of the runtime run on this model (real ONNX graphs, real onnxruntime), so they exercise the
exact code path of the shipped model in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.model import LarsrModel
    from export.to_onnx import export_model

    out = tmp_path_factory.mktemp("models") / "tiny"
    export_model(LarsrModel.from_name("tiny", seed=0), out, "tiny", with_full=True)
    return out


@pytest.fixture(scope="session")
def tiny_torch_model():
    from export.model import LarsrModel

    return LarsrModel.from_name("tiny", seed=0).eval()
