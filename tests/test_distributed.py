"""``larsr upscale --ray`` and ``larsr_cli.distributed`` on a real two-node Ray cluster.

Nothing here is mocked: ``tests/ray_cluster.py`` starts ``ray start --head`` and a second node
on this machine (1 CPU each, own ports and temp folders) once for this file and stops exactly its
own processes afterwards. The model is the tiny one of conftest.py. What is asserted is what a
user would check: the cluster writes the very bytes ``larsr upscale`` writes without it, a worker
killed mid-run costs nothing but time, a stopped run resumes, a bad file is one line of error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from larsr_cli.atomic import TMP_MARKER
from larsr_cli.cli import main

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) done, (\d+) skipped, (\d+) failed in [\d.]+ s")

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:  # CI installs it (the test extra); a bare checkout skips these, never CI
    HAVE_RAY = False

needs_ray = pytest.mark.skipif(
    not HAVE_RAY and not os.environ.get("CI"), reason="ray is not installed (pip install -e '.[test]')"
)
pytestmark = needs_ray


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """Up for this file's tests, down before the rest of the suite (it holds ~1.5 GB idle)."""
    from ray_cluster import LocalCluster

    with LocalCluster(cpus_per_node=1) as running:
        yield running


def _exif(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "LarsrCam"
    if orientation:
        exif[0x0112] = orientation
    return exif.tobytes()


def write_photos(folder: Path, size: tuple[int, int] = (16, 12)) -> Path:
    """Files whose metadata and depth a careless byte pipeline would lose: ICC + EXIF, 16-bit
    with alpha, an EXIF-rotated JPEG, 8-bit alpha."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(7)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
        folder / "icc.png", icc_profile=icc, exif=_exif(), dpi=(300, 300)
    )
    deep = rng.integers(0, 65536, (h, w, 4), dtype=np.uint16)
    cv2.imwrite(str(folder / "deep16.png"), deep)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
        folder / "turned.jpg", quality=95, exif=_exif(orientation=6)
    )
    Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").save(folder / "alpha.png")
    return folder


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("ray-photos") / "in")


COMMON = ["--seed", "5", "--samples", "2", "--tile", "8"]


def cli(*args: str) -> tuple[int, str, str]:
    """``larsr ARGS`` in this process (click's runner): exit code, stdout, stderr."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="session")
def reference(photos: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What plain ``larsr upscale`` writes for the photos: the bytes the cluster must match."""
    out = tmp_path_factory.mktemp("ray-reference") / "out"
    code, _, err = cli("upscale", str(photos), "-o", f"{out}/", "--model", str(tiny_model_dir), *COMMON)
    assert code == 0, err
    assert len(list(out.iterdir())) == 8
    return out


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if TMP_MARKER in p.name]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("larsr: error:")]


def our_actors(cluster) -> list:
    from ray.util.state import list_actors

    actors = list_actors(address=cluster.dashboard, limit=1000, raise_on_missing_output=False)
    return [a for a in actors if "UpscaleWorker" in (a.class_name or "")]


# ---- same pixels --------------------------------------------------------------------------------


def test_cluster_writes_the_same_bytes_as_the_cli(cluster, photos, reference, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    before = {a.actor_id for a in our_actors(cluster)}
    code, stdout, err = cli(
        "upscale", str(photos), "-o", f"{out}/", "--model", str(tiny_model_dir), *COMMON,
        "--ray", cluster.address, "--workers", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(stdout)
    assert (report["done"], report["skipped"], report["failed"]) == (8, 0, 0)
    assert report["device"].startswith("ray: 2 workers x cpu")
    assert sorted(r["seed"] for r in report["results"]) == [
        5,
        5,
        5,
        5,
        6,
        6,
        6,
        6,
    ]  # per file, not per worker
    assert tree(out) == tree(reference)  # byte for byte: pixels, ICC, EXIF, dpi, 16 bits, alpha
    assert temp_files(out) == []
    assert "Traceback" not in err
    # It really ran on both nodes: two actors, on two raylets.
    actors = [a for a in our_actors(cluster) if a.actor_id not in before]
    assert len({a.node_id for a in actors}) == 2


def test_dataset_entry_point_writes_the_same_bytes_to_a_uri(
    cluster, photos, reference, tiny_model_dir, tmp_path
):
    import ray

    from larsr_cli.distributed import upscale_on_ray

    out = tmp_path / "uri-out"
    seen: list[tuple[int, int | None, float]] = []
    ray.init(address=cluster.address, logging_level="ERROR")
    try:
        ds = ray.data.read_binary_files(str(photos), include_paths=True)
        summary = upscale_on_ray(
            ds,
            f"file://{out}/",
            model=str(tiny_model_dir),
            seed=5,
            samples=2,
            tile=8,
            progress=lambda done, total, rate: seen.append((done, total, rate)),
        )
    finally:
        ray.shutdown()
    assert (summary.count("done"), summary.count("failed")) == (8, 0), [r.reason for r in summary.failed]
    assert tree(out) == tree(reference)  # bytes through Ray's object store decode the same
    assert temp_files(out) == []
    assert all(str(r.job.target).startswith("file://") for r in summary.results)
    assert summary.workers == 1  # of 2 CPUs: one is left to the read tasks, or they would starve
    assert [done for done, _, _ in seen] == list(range(1, 9)) and all(rate > 0 for _, _, rate in seen)


# ---- faults -----------------------------------------------------------------------------------


def test_a_worker_killed_mid_run_costs_nothing_but_time(cluster, tiny_model_dir, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(8):  # 64x48 with 16 px tiles: ~1.5 s each, so the run outlives the kill
        pixels = np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"p{i}.png")
    out = tmp_path / "out"
    args = [str(photos), "-o", f"{out}/", "--model", str(tiny_model_dir), "--tile", "16", "--seed", "3"]
    before = {a.actor_id for a in our_actors(cluster)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "larsr_cli",
            "upscale",
            *args,
            "--ray",
            cluster.address,
            "--workers",
            "2",
            "--json",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = None
    try:
        deadline = time.monotonic() + 240
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            alive = [
                a for a in our_actors(cluster) if a.actor_id not in before and a.state == "ALIVE" and a.pid
            ]
            done = list(out.glob("*.png")) if out.exists() else []
            if len(alive) == 2 and len(done) >= 2:  # both working, images finished: mid-run
                victim = alive[0].pid
                os.kill(victim, signal.SIGKILL)
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert victim is not None, "the run ended before a worker could be killed"
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert (report["done"], report["failed"]) == (8, 0), report
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.png" for i in range(8)]  # each once
    assert temp_files(out) == []
    assert "lost and restarted" in stderr, stderr
    assert not [line for line in stderr.splitlines() if line.strip()][1:], stderr  # that line alone
    assert "Traceback" not in stderr
    # The survivors and the re-run image are the bytes plain larsr writes.
    ref = tmp_path / "ref"
    code, _, err = cli("upscale", *args[:1], "-o", f"{ref}/", *args[3:])
    assert code == 0, err
    assert tree(out) == tree(ref)


def test_a_stopped_run_resumes_with_skip_existing(cluster, photos, reference, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    done_before = sorted(reference.iterdir())[:3]
    for path in done_before:  # a run stopped after three images, and one killed mid-write
        shutil.copy(path, out / path.name)
    (out / f".{done_before[0].name}{TMP_MARKER}dead").write_bytes(b"half")
    base = ["upscale", str(photos), "-o", f"{out}/", "--model", str(tiny_model_dir), *COMMON]
    ray_args = ["--ray", cluster.address, "--workers", "2", "--json"]

    code, stdout, err = cli(*base, *ray_args, "--skip-existing")
    assert code == 0, err
    report = json.loads(stdout)
    assert (report["done"], report["skipped"], report["failed"]) == (5, 3, 0)
    assert tree(out) == tree(reference)
    assert temp_files(out) == []

    # Again: everything is there, nothing to do, nothing sent to the cluster.
    code, stdout, err = cli(*base, *ray_args, "--skip-existing")
    assert code == 0 and json.loads(stdout)["skipped"] == 8
    # Without --skip-existing, the CLI's rule: an existing output is never replaced; exit 1.
    code, stdout, err = cli(*base, *ray_args)
    assert code == 1
    assert json.loads(stdout)["failed"] == 8
    assert len(error_lines(err)) == 8 and all("exists; use --overwrite" in e for e in error_lines(err))


def test_a_bad_file_is_one_line_and_the_rest_is_written(cluster, tiny_model_dir, tmp_path):
    photos = write_photos(tmp_path / "in")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    code, stdout, err = cli(
        "upscale", str(photos), "-o", f"{out}/", "--model", str(tiny_model_dir), "--tile", "8",
        "--ray", cluster.address, "--json",
    )  # fmt: skip
    assert code == 1
    report = json.loads(stdout)
    assert (report["done"], report["failed"]) == (4, 1)
    lines = error_lines(err)
    assert len(lines) == 1 and "broken.png" in lines[0] and "Traceback" not in err
    # The same one line the CLI prints without a cluster.
    _, _, local_err = cli("upscale", str(photos / "broken.png"), "-o", str(tmp_path / "x.png"), "--model",
                          str(tiny_model_dir))  # fmt: skip
    assert error_lines(local_err) == lines
    assert sorted(p.name for p in out.iterdir()) == ["alpha.png", "deep16.png", "icc.png", "turned.jpg"]


def test_a_model_the_workers_cannot_load_stops_the_run_with_one_line(cluster, tiny_model_dir, tmp_path):
    """The driver's model is fine, the workers' is not (as when a folder is not on shared storage):
    every image would fail the same way, so the run stops with that one reason, writing nothing."""
    from larsr_cli.distributed import ClusterOptions, plan_cluster_jobs, run_jobs
    from larsr_cli.engine import RenderSettings
    from larsr_cli.errors import LarsrError
    from larsr_cli.jobs import NamingOptions

    photos = write_photos(tmp_path / "in")
    out = tmp_path / "out"
    jobs = plan_cluster_jobs([str(photos)], NamingOptions(f"{out}/", "same", "", 0, 1, False))
    options = ClusterOptions(cluster.address, workers=1, quiet_ray=True)
    with pytest.raises(LarsrError, match=r"^a Ray worker could not start: .*no-such-model"):
        run_jobs(jobs, str(tmp_path / "no-such-model"), RenderSettings(tile=8), options)
    assert not out.exists() or not any(out.iterdir())


def test_workers_run_the_precision_asked_for(cluster, photos, int8_model_dir, tmp_path):
    """--precision reaches the actors: int8 bytes equal the local int8 run, not the fp32 one, and
    the report says what the workers used."""
    local = {}
    for precision in ("int8", "fp32"):
        out = tmp_path / f"local-{precision}"
        code, _, err = cli("upscale", str(photos), "-o", f"{out}/", "--model", str(int8_model_dir),
                           *COMMON, "--precision", precision)  # fmt: skip
        assert code == 0, err
        local[precision] = tree(out)
    assert local["int8"] != local["fp32"]
    out = tmp_path / "out"
    code, stdout, err = cli(
        "upscale", str(photos), "-o", f"{out}/", "--model", str(int8_model_dir), *COMMON,
        "--precision", "int8", "--ray", cluster.address, "--workers", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["precision"] == "int8"
    assert tree(out) == local["int8"]


# ---- refusals, no cluster needed ----------------------------------------------------------------


def test_without_ray_installed_one_line_says_how_to_get_it(tmp_path, tiny_model_dir):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoRay:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith('ray.'):\n"
        "            raise ImportError(f'No module named {name!r} (blocked by the test)')\n"
        "sys.meta_path.insert(0, _NoRay())\n"
    )
    photo = write_photos(tmp_path / "in") / "icc.png"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "larsr_cli", "upscale", str(photo), "-o", str(tmp_path / "o.png"),
         "--model", str(tiny_model_dir), "--ray", "auto"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert (
        lines[0].startswith("larsr: error: --ray needs Ray Data") and "pip install 'larsr[ray]'" in lines[0]
    )
    assert not (tmp_path / "o.png").exists()


def test_an_unreachable_cluster_is_one_line_and_quick(tmp_path, tiny_model_dir):
    from ray_cluster import _free_ports

    photo = write_photos(tmp_path / "in") / "icc.png"
    (port,) = _free_ports(1)  # nothing listens there
    start = time.monotonic()
    code, _, err = cli("upscale", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(tiny_model_dir),
                       "--ray", f"127.0.0.1:{port}")  # fmt: skip
    assert code == 1 and time.monotonic() - start < 30
    assert error_lines(err) == [
        f"larsr: error: --ray 127.0.0.1:{port}: no Ray cluster answers there (Connection refused); "
        "start one with `ray start --head` or check the address"
    ]
    code, _, err = cli("upscale", str(photo), "-o", str(tmp_path / "o.png"), "--ray", "nowhere")
    assert code == 1 and "expected auto, local or HOST:PORT" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["IN", "-o", "OUT/", "--workers", "2"], "--workers sizes a Ray actor pool; it needs --ray"),
        (["IN", "-o", "-", "--ray", "auto"], "--ray writes files; -o - (stdout) works without --ray"),
        (["-", "-o", "OUT/", "--ray", "auto"], "--ray cannot read standard input"),
        (
            ["IN", "-o", "OUT/", "--ray", "auto", "--precision", "int8", "--model", "TINY"],
            "ships no int8 graphs; use --precision fp32",
        ),
    ],
)
def test_options_that_cannot_work_on_a_cluster_are_refused(tmp_path, args, message, tiny_model_dir):
    photo = write_photos(tmp_path / "in") / "icc.png"
    named = {"IN": str(photo), "OUT/": str(tmp_path / "out") + "/", "TINY": str(tiny_model_dir)}
    args = [named.get(a, a) for a in args]
    code, _, err = cli("upscale", *args)
    assert code == 1
    assert len(error_lines(err)) == 1 and message in err


def test_uri_outputs_are_named_like_folders(tmp_path):
    from larsr_cli.distributed import plan_cluster_jobs
    from larsr_cli.jobs import NamingOptions

    photos = write_photos(tmp_path / "in")
    jobs = plan_cluster_jobs([str(photos)], NamingOptions(f"file://{tmp_path}/o/", "png", "_x4", 1, 2, False))
    assert sorted(str(j.target) for j in jobs)[:2] == [
        f"file://{tmp_path}/o/alpha_x4_s1.png",
        f"file://{tmp_path}/o/alpha_x4_s2.png",
    ]
