"""Stage-wise training of LAR-SR on CPU (or CUDA when present).

``python -m export.train --stage coarse|vqvae|lar --config small --data data/photos --run runs/x4``

Stages follow the paper: the coarse SR network first (L1), then the texture VQ-VAE on top of the
frozen coarse net (L1 + LPIPS + commitment, EMA codebook), then the LAR module (cross-entropy on the
indices of the frozen VQ-VAE). All stages write into one checkpoint (``RUN/model.pt``) so export needs
a single file; each stage also keeps its optimiser state (``RUN/<stage>_state.pt``) so a run resumes
where it stopped. ``--minutes`` is a wall-clock budget: runs are sized to fit a working session.
bf16 autocast (``--bf16``) pays off only on CPUs with AMX (2.5-5x on Sapphire Rapids, design doc
section 7); on the AVX2-only EPYC this recipe ran on it was 6x *slower* than fp32, so fp32 is the
default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from larsr_cli.atomic import atomic_write

from .configs import get_config, parse_overrides
from .data import CropDataset, make_pair, val_images
from .degrade import bicubic_downscale_torch, bicubic_upscale
from .metrics import psnr_y
from .model import LarsrModel, load_checkpoint, save_checkpoint

STAGES = ("coarse", "vqvae", "lar")


def log(run: Path, record: dict[str, Any]) -> None:
    line = json.dumps({"time": round(time.time(), 1), **record})
    print(line, flush=True)
    with open(run / "log.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def batches(data: CropDataset, batch: int, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    epoch = 0
    while True:
        data.set_epoch(epoch)
        for start in range(0, len(data) - batch + 1, batch):
            items = [data[i] for i in range(start, start + batch)]
            lr = torch.stack([a for a, _ in items]).to(device, memory_format=torch.channels_last)
            hr = torch.stack([b for _, b in items]).to(device, memory_format=torch.channels_last)
            yield lr, hr
        epoch += 1


def load_or_create(
    run: Path,
    config: str,
    init: Path | None = None,
    overrides: dict[str, Any] | None = None,
    reinit: tuple[str, ...] = (),
) -> tuple[LarsrModel, dict[str, Any]]:
    """The run's own checkpoint if it has one; else ``init``'s weights (a new round that starts
    from a finished model) under a config with ``overrides``; else fresh weights."""
    ckpt = run / "model.pt"
    if ckpt.exists():
        return load_checkpoint(ckpt)
    if init is None:
        cfg = get_config(config).with_overrides(**(overrides or {}))
        torch.manual_seed(0)
        return LarsrModel(cfg), {}
    start, extra = load_checkpoint(init)
    torch.manual_seed(0)
    model = LarsrModel(start.cfg.with_overrides(**(overrides or {})))
    for part in ("coarse", "vqvae", "lar"):
        if part not in reinit:
            getattr(model, part).load_state_dict(getattr(start, part).state_dict())
    return model, {**extra, "init": str(init), "overrides": overrides or {}, "reinit": list(reinit)}


def trained_parts(stage: str, joint_coarse: bool) -> tuple[str, ...]:
    """The VQ-VAE stage may keep refining the coarse net, as the paper's Algorithm 1 does (it
    updates E, D and C together); on a CPU budget that is extra coarse training for little cost."""
    return ("coarse", "vqvae") if stage == "vqvae" and joint_coarse else (stage,)


def stage_parameters(model: LarsrModel, parts: tuple[str, ...]) -> list[torch.nn.Parameter]:
    for part in ("coarse", "vqvae", "lar"):
        getattr(model, part).requires_grad_(part in parts)
        getattr(model, part).train(part in parts)
    return [p for part in parts for p in getattr(model, part).parameters() if p.requires_grad]


def stripe_penalty(sr: torch.Tensor, hr: torch.Tensor, periods: tuple[int, ...] = (4, 8)) -> torch.Tensor:
    """How much more the output's luma peaks at 4 and 8 px periods than the HR crop's does.

    The differentiable twin of ``export.metrics.stripe_score``: per image, axis and period, the
    power on that spectral line over the mean power 2-4 bins either side; only an excess over the
    HR crop's own ratio is penalised, so real periodic texture (bricks, fabric) costs nothing.
    """

    def ratios(img: torch.Tensor) -> torch.Tensor:
        y = 0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]
        y = y - y.mean(dim=(1, 2), keepdim=True)
        power = torch.fft.fft2(y).abs() ** 2
        out = []
        for axis, n in ((2, y.shape[2]), (1, y.shape[1])):
            line = power.mean(dim=3 - axis)  # (N, n)
            for p in periods:
                k = n // p
                around = line[:, [k + d for d in (-4, -3, -2, 2, 3, 4)]].mean(dim=1)
                out.append(line[:, k] / (around + 1e-8))
        return torch.stack(out, dim=1)

    return torch.relu(ratios(sr.float()) - ratios(hr.float())).mean()


class GanTerm:
    """Hinge-loss patch GAN for the VQ-VAE stage: the generator term and the discriminator step.

    The discriminator starts ``start`` steps into the stage, once the decoder renders something
    worth judging, and trains in fp32 with its own Adam; its state travels in the stage's
    optimiser file so a resumed run keeps its critic.
    """

    def __init__(self, weight: float, start: int, device: torch.device) -> None:
        from .networks.discriminator import PatchDiscriminator

        self.weight, self.start = weight, start
        self.net = PatchDiscriminator().to(device)
        self.optimiser = torch.optim.Adam(self.net.parameters(), lr=2e-4, betas=(0.5, 0.9))

    def active(self, step: int) -> bool:
        return self.weight > 0 and step >= self.start

    def generator_loss(self, sr: torch.Tensor) -> torch.Tensor:
        self.net.requires_grad_(False)
        return -self.net(sr.float()).mean()

    def discriminator_step(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        self.net.requires_grad_(True)
        real, fake = self.net(hr.float()), self.net(sr.detach().float())
        loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return {"d_loss": loss.item(), "d_real": real.mean().item(), "d_fake": fake.mean().item()}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimiser": self.optimiser.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimiser.load_state_dict(state["optimiser"])


class StageLoss:
    """The loss of one stage, computed from an (lr, hr) batch."""

    def __init__(
        self,
        model: LarsrModel,
        stage: str,
        lpips_weight: float,
        consistency_weight: float,
        joint: bool,
        lpips_net: str = "alex",
        stripe_weight: float = 0.0,
        l1_weight: float = 1.0,
        mse_weight: float = 0.0,
        gan: GanTerm | None = None,
    ):
        self.model, self.stage, self.joint = model, stage, joint
        self.stripe_weight = stripe_weight
        self.l1_weight, self.mse_weight, self.gan = l1_weight, mse_weight, gan
        self.step = 0
        self.last_sr: torch.Tensor | None = None
        self.consistency_weight = consistency_weight
        self.lpips = None
        if stage == "vqvae" and lpips_weight > 0:
            from .lpips import LPIPS

            self.lpips = LPIPS.from_converted(lpips_net).eval().requires_grad_(False)
            self.lpips_weight = lpips_weight

    def __call__(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        m = self.model
        if self.stage == "coarse":
            xc = m.coarse(lr)
            l1 = F.l1_loss(xc.float(), hr)
            cons = F.l1_loss(bicubic_downscale_torch(xc.float()), lr)
            return l1 + self.consistency_weight * cons, {"l1": l1.item(), "lr_l1": cons.item()}
        if self.stage == "vqvae" and self.joint:
            xc = m.coarse(lr).float()
            coarse_loss = F.l1_loss(xc, hr) + self.consistency_weight * F.l1_loss(
                bicubic_downscale_torch(xc), lr
            )
            xc_in = xc.detach()  # the VQ-VAE's gradients must not pull the coarse image towards texture
        else:
            with torch.no_grad():
                xc_in = m.coarse(lr).float()
            coarse_loss = None
        xc = xc_in
        if self.stage == "vqvae":
            out = m.vqvae(hr, xc)
            sr = out.sr.float()
            l1 = F.l1_loss(sr, hr)
            cons = F.l1_loss(bicubic_downscale_torch(sr), lr)
            # L1 alone keeps the decoder at its zero-residual start (the median of noise-like
            # residuals is 0): round 3's decoder ignored its codes. A squared term breaks out.
            mse = F.mse_loss(sr, hr)
            loss = self.l1_weight * l1 + self.mse_weight * mse + out.commitment
            loss = loss + self.consistency_weight * cons
            stats = {
                "l1": l1.item(),
                "mse_ratio": (mse / F.mse_loss(xc, hr).clamp_min(1e-8)).item(),
                "commit": out.commitment.item(),
                "lr_l1": cons.item(),
            }
            if self.gan is not None and self.gan.active(self.step):
                adv = self.gan.generator_loss(sr.clamp(0, 1))
                loss = loss + self.gan.weight * adv
                stats["g_adv"] = adv.item()
                self.last_sr = sr.detach()
            if self.lpips is not None:
                perc = self.lpips(sr.clamp(0, 1), hr).mean()
                loss = loss + self.lpips_weight * perc
                stats["lpips"] = perc.item()
            if self.stripe_weight > 0:
                stripes = stripe_penalty(sr.clamp(0, 1), hr)
                loss = loss + self.stripe_weight * stripes
                stats["stripes"] = stripes.item()
            stats["codes_used"] = torch.unique(out.indices).numel()
            if coarse_loss is not None:
                loss = loss + coarse_loss
                stats["coarse_loss"] = coarse_loss.item()
            return loss, stats
        with torch.no_grad():
            indices = m.vqvae.encode(hr, xc)
        logits = m.lar(xc, indices)
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), indices.reshape(-1))
        acc = (logits.argmax(-1) == indices).float().mean()
        return ce, {"ce": ce.item(), "acc": acc.item()}

    @torch.no_grad()
    def reconstruct(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """The VQ-VAE's reconstruction with the HR crop's own codes (for the critic's warm-up)."""
        return self.model.vqvae(hr, self.model.coarse(lr).float()).sr.float()


@torch.no_grad()
def validate(model: LarsrModel, stage: str, val: list[tuple[str, np.ndarray]], device: torch.device) -> dict:
    """PSNR-Y of the stage's deterministic output vs bicubic on the held-out photos."""
    model.eval()
    gains, coarse_gains, ce_total, count = [], [], 0.0, 0
    for _, hr_np in val:
        lr_np, _ = make_pair(hr_np)
        lr = torch.from_numpy(lr_np.transpose(2, 0, 1))[None].to(device)
        hr = torch.from_numpy(hr_np.transpose(2, 0, 1).copy())[None].to(device)
        xc = model.coarse(lr).float()
        if stage == "coarse":
            out = xc
        elif stage == "vqvae":
            out = model.vqvae(hr, xc).sr  # reconstruction with the true codes
        else:
            idx = model.vqvae.encode(hr, xc)
            logits = model.lar(xc, idx)
            ce_total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx.reshape(-1)).item()
            count += 1
            continue
        sr = out.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        coarse = xc.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        bic = psnr_y(bicubic_upscale(lr_np), hr_np)  # the benchmarks' baseline, so the log and RESULTS agree
        gains.append(psnr_y(sr, hr_np) - bic)
        coarse_gains.append(psnr_y(coarse, hr_np) - bic)
    if stage == "lar":
        return {"val_ce": ce_total / max(count, 1)}
    return {
        "val_psnr_gain_db": float(np.mean(gains)),
        "val_gain_min": float(np.min(gains)),
        "val_coarse_gain_db": float(np.mean(coarse_gains)),
    }


def train(args: argparse.Namespace) -> None:
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.set_num_threads(args.threads)
    model, extra = load_or_create(
        run, args.config, args.init, parse_overrides(args.override), tuple(args.reinit)
    )
    model.to(device).to(memory_format=torch.channels_last)
    parts = trained_parts(args.stage, args.joint_coarse)
    params = stage_parameters(model, parts)
    optimiser = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    state_path = run / state_name(args.stage, args.round)
    step = 0
    state: dict[str, Any] = {}
    if state_path.exists() and not args.restart:
        state = torch.load(state_path, map_location=device, weights_only=False)
        optimiser.load_state_dict(state["optimiser"])
        step = state["step"]
    hr_size = args.hr_size
    data = CropDataset(
        args.data,
        "train",
        hr_size=hr_size,
        length=args.batch * 500,
        seed=step,
        detail_tries=args.detail_tries,
    )
    val = val_images(args.data, max_side=args.val_side)
    gan = GanTerm(args.gan, args.gan_start, device) if args.stage == "vqvae" and args.gan > 0 else None
    if gan is not None and state_path.exists() and not args.restart and "gan" in state:
        gan.load_state_dict(state["gan"])
    loss_fn = StageLoss(
        model,
        args.stage,
        args.lpips,
        args.consistency,
        args.joint_coarse,
        args.lpips_net,
        args.stripes,
        l1_weight=args.l1,
        mse_weight=args.mse,
        gan=gan,
    )
    use_bf16 = device.type == "cpu" and args.bf16
    budget = args.minutes * 60
    deadline = time.time() + budget
    last_save = time.time()
    total_steps = args.steps
    stream = batches(data, args.batch, device)
    start = {"event": "start", "round": args.round, "step": step, "config": model.cfg.name}
    log(run, {"stage": args.stage, **start})
    while time.time() < deadline and step < total_steps:
        lr_batch, hr_batch = next(stream)
        # The schedule ends at --steps or at the wall-clock budget, whichever comes first, so a
        # run cut short by its budget still finishes with a decayed learning rate.
        frac = min(1.0, max(step / total_steps, 1 - (deadline - time.time()) / budget))
        for group in optimiser.param_groups:  # cosine decay with a short warm-up
            group["lr"] = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * frac))
        loss_fn.step = step
        with autocast(device, use_bf16):
            loss, stats = loss_fn(lr_batch, hr_batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        if gan is not None and (gan.active(step) or step >= gan.start - 100):
            # The critic warms up 100 steps before the generator first hears from it.
            fake = loss_fn.last_sr
            if fake is None:
                with torch.no_grad(), autocast(device, use_bf16):
                    fake = loss_fn.reconstruct(lr_batch, hr_batch)
            stats.update(gan.discriminator_step(fake.clamp(0, 1), hr_batch))
            loss_fn.last_sr = None
        step += 1
        if step % args.log_every == 0:
            log(run, {"stage": args.stage, "step": step, "loss": round(loss.item(), 5), **stats})
        if time.time() - last_save > args.save_minutes * 60:
            checkpoint(run, model, extra, optimiser, step, state_path, gan)
            log(run, {"stage": args.stage, "step": step, **validate(model, args.stage, val, device)})
            stage_parameters(model, parts)
            last_save = time.time()
    metrics = validate(model, args.stage, val, device)
    key = args.stage if args.round == 1 else f"{args.stage}_r{args.round}"
    extra.setdefault("stages", {})[key] = {"steps": step, **metrics}
    checkpoint(run, model, extra, optimiser, step, state_path, gan)
    log(run, {"stage": args.stage, "event": "done", "step": step, **metrics})


def state_name(stage: str, round_: int) -> str:
    """Each round keeps its own optimiser state, so an interrupted round-2 stage resumes round 2's
    schedule instead of round 1's finished one."""
    return f"{stage}_state.pt" if round_ == 1 else f"{stage}_r{round_}_state.pt"


def checkpoint(
    run: Path,
    model: LarsrModel,
    extra: dict,
    optimiser: Any,
    step: int,
    state_path: Path,
    gan: GanTerm | None = None,
) -> None:
    save_checkpoint(run / "model.pt", model, extra)
    state = {"optimiser": optimiser.state_dict(), "step": step}
    if gan is not None:
        state["gan"] = gan.state_dict()
    with atomic_write(state_path, overwrite=True) as fh:
        torch.save(state, fh)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train one LAR-SR stage.")
    p.add_argument("--stage", choices=STAGES, required=True)
    p.add_argument("--config", default="small")
    p.add_argument("--data", type=Path, default=Path("data/photos"))
    p.add_argument("--run", type=Path, default=Path("runs/larsr-x4"))
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget for this run")
    p.add_argument("--steps", type=int, default=20000, help="schedule length (cosine decay)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hr-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--lpips", type=float, default=0.1, help="LPIPS weight in the VQ-VAE stage")
    p.add_argument(
        "--lpips-net",
        choices=("alex", "vgg"),
        default="alex",
        help="backbone of the perceptual loss; vgg is the VGG feature loss of ESRGAN-style training",
    )
    p.add_argument(
        "--stripes",
        type=float,
        default=0.0,
        help="VQ-VAE stage: weight of the penalty on 4/8 px spectral lines the HR crop does not have",
    )
    p.add_argument(
        "--detail-tries",
        type=int,
        default=1,
        help="crop candidates per sample; the most detailed wins, so training sees texture, not sky",
    )
    p.add_argument("--l1", type=float, default=1.0, help="VQ-VAE stage: weight of L1(sr, hr)")
    p.add_argument(
        "--mse", type=float, default=0.0, help="VQ-VAE stage: weight of MSE(sr, hr); ~10 matches L1's scale"
    )
    p.add_argument("--gan", type=float, default=0.0, help="VQ-VAE stage: weight of the patch-GAN term")
    p.add_argument("--gan-start", type=int, default=500, help="step at which the GAN term starts")
    p.add_argument(
        "--reinit",
        action="append",
        default=[],
        choices=("coarse", "vqvae", "lar"),
        help="with --init: start this part from fresh weights (repeatable)",
    )
    p.add_argument("--consistency", type=float, default=1.0, help="weight of L1(down(sr), lr)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-minutes", type=float, default=5.0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--val-side", type=int, default=192)
    p.add_argument("--restart", action="store_true", help="ignore saved optimiser state")
    p.add_argument(
        "--round",
        type=int,
        default=1,
        help="2+: a new schedule from the weights so far, with its own resumable optimiser state",
    )
    p.add_argument(
        "--joint-coarse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="VQ-VAE stage: keep training the coarse net (L1) alongside",
    )
    p.add_argument("--init", type=Path, help="checkpoint to start a new run from (when RUN has none)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config field for a new run, e.g. vq_cosine=true (repeatable)",
    )
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on CPU (only pays off with AMX)")
    args = p.parse_args(argv)
    get_config(args.config)
    train(args)


if __name__ == "__main__":
    main()
