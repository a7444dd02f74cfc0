"""Shared fixtures: a tiny randomly initialised model exported once per test session, and a tiny
fetched-looking photo folder.

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


@pytest.fixture()
def photos_dir(tmp_path: Path) -> Path:
    """A tiny fetched-looking folder: two train photos (one JPEG-sourced), one val, one dropped."""
    from photos import write_photo_folder

    return write_photo_folder(tmp_path / "photos")


@pytest.fixture(scope="session")
def int8_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model plus int8 graphs from ``export.quantize``, calibrated on a few random crops.

    The quality floor needs the photo data, so it is skipped here; a copy, because the tiny model
    is shared by the whole session.
    """
    import shutil

    import numpy as np

    from export.quantize import ALL_ROLES, quantize_model

    out = tmp_path_factory.mktemp("models") / "tiny-int8"
    shutil.copytree(tiny_model_dir, out)
    rng = np.random.default_rng(0)
    lrs = [rng.random((16, 16, 3), dtype=np.float32) for _ in range(3)]
    quantize_model(out, lrs, ALL_ROLES, check=False, log=lambda *_: None)  # every graph int8
    return out
