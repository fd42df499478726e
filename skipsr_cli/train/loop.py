"""Training, in three resumable stages: `vae`, then `dit` (VAE frozen), then `mask` (both frozen).

Each run trains for at most `minutes` and then checkpoints; running the same command again resumes
exactly (model, optimizer, step, random state; batches are a function of the step). A stage starts
from the previous stage's weights (`--init`). Losses are in pixel space where it matters for PSNR.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from models import ModelArgs, SkipSR
from models.dit import TokenSet, patchify
from models.skipsr import compose, token_noise
from skipsr_cli.errors import UsageError
from skipsr_cli.train.checkpoint import load_checkpoint, recover, save_checkpoint
from skipsr_cli.train.data import ClipPairs, cache_videos, check_pack
from skipsr_cli.train.warm_start import (
    fitting_tensors,
    new_blocks_start_as_identity,
    widened_inputs,
)
from skipsr_cli.weights import load_model, save_model

STAGES = ("vae", "dit", "mask")
# seconds the training process waits for its next batch (the first includes starting the workers,
# each of which loads the pack's photos) before it stops with an error instead of waiting forever
DATA_TIMEOUT = 300.0


@dataclass(frozen=True)
class TrainConfig:
    stage: str
    data: Path  # a pack made by `skipsr train pack`
    out: Path  # checkpoint folder of this stage
    args: ModelArgs
    init: Path | None = None  # weights to start from (the previous stage's export)
    minutes: float = 9.0
    max_steps: int = 100_000
    batch: int = 8
    frames: int = 8
    crop: int = 192
    lr: float = 4e-4
    warmup: int = 200
    seed: int = 0
    workers: int = 12
    save_every: float = 120.0  # seconds between checkpoints
    decoder: bool = False  # dit stage: train the VAE decoder with the transformer (encoder frozen)
    stop_at: int | None = None  # end this run at this step; the schedule still spans max_steps
    # optimizer steps per loaded batch, each on another mirror image or quarter turn of it: data
    # making (decoding, degrading) is the bottleneck, so this multiplies the steps per second
    reuse: int = 1
    # turn, mirror and reorder the colours of each clip (48 views): with a few dozen sources the
    # model otherwise learns them by heart (held-out x2 clean went from 0.33 dB below lanczos to
    # 0.45 above when a fine-tune switched this on)
    augment: bool = True
    scales: tuple[int, ...] = (2, 4)  # drawn uniformly per batch: repeat one to weight it
    # weight of the temporal loss: the output's frame-to-frame changes against the target's (what
    # the flicker figure measures); 0 leaves it out
    temporal: float = 0.0
    # the distribution of training inputs: a profile of train.degrade.PROFILES
    degrade: str = "mixed"
    # --init may differ in shape (a wider decoder): tensors that fit are loaded, the rest start fresh
    init_partial: bool = False
    # how photos become clips: a key of train.data.PHOTO_MOVES ("exact" pans keep the photo's pixels;
    # "resampled", what `base` up to ft4m saw, blurs the targets a little)
    photo_moves: str = "exact"
    # the share of training clips cut from real videos (the rest are photos under a moving camera)
    video_fraction: float = 0.3


def build(cfg: TrainConfig, device: torch.device) -> SkipSR:
    if cfg.stage == "vae" and cfg.args.vae.kind == "pixel":
        raise UsageError(
            "the pixel VAE is exact and has nothing to train alone: "
            "train its decoder with the transformer (stage dit with --decoder)"
        )
    with torch.device(device):
        model = SkipSR(cfg.args)
    model.init_weights(cfg.seed)
    if cfg.init is not None:  # same tensors, the configuration may differ in scalars (latent_scale)
        state = load_model(weights=cfg.init, device=device).state_dict()
        if cfg.init_partial:
            state = fitting_tensors(model, widened_inputs(model, state))
            new_blocks_start_as_identity(model, set(state))
        model.load_state_dict(state, strict=not cfg.init_partial)
    if cfg.decoder and model.args.vae.guided:
        # A guided decoder trained alone learns to return its guide and parks its output conv at ~0,
        # which blocks every gradient from the latent: restart that one layer small and random.
        with torch.no_grad():
            head = model.vae.decoder.conv_out
            torch.nn.init.kaiming_uniform_(head.weight, a=5**0.5)
            head.weight.mul_(0.1)
    return model.train()


def trainable(model: SkipSR, stage: str, decoder: bool = False) -> torch.nn.Module:
    """The networks a stage updates. With `decoder`, the dit stage also tunes the (guided) decoder:
    the encoder stays frozen, so the condition latent and the mask predictor's input do not move."""
    if stage == "dit" and decoder:
        # the pixel decoder's optional fine stage and linear branch train with it
        extra = [getattr(model.vae, name, None) for name in ("fine", "linear")]
        return torch.nn.ModuleList(
            [model.dit, model.vae.decoder, *(m for m in extra if m is not None)]
        )
    return {"vae": model.vae, "dit": model.dit, "mask": model.mask_predictor}[stage]


def charbonnier(a: Tensor, b: Tensor, eps: float = 1e-3) -> Tensor:
    return torch.sqrt((a - b).float().pow(2) + eps * eps).mean()


def to_video(frames: Tensor, device: torch.device) -> Tensor:
    """uint8 (B, T, 3, H, W) -> float (B, 3, T, H, W) in [0, 1] on the device."""
    return frames.to(device, non_blocking=True).permute(0, 2, 1, 3, 4).float() / 255


def vae_loss(model: SkipSR, hr: Tensor, lr: Tensor, step: int) -> tuple[Tensor, dict]:
    """Reconstruct both targets and upsampled inputs: the VAE encodes the condition too."""
    fill = model.upsample(lr, hr.shape[-2:])
    x = (hr if step % 2 == 0 else fill) * 2 - 1
    mean, _ = model.vae.encoder(x).chunk(2, dim=1)
    rec = model.vae.decoder(mean, guide=model.guide(fill))
    loss = charbonnier(rec, x) + 1e-4 * mean.float().pow(2).mean()
    mse = (rec.float().clamp(-1, 1) - x.float()).pow(2).mean() / 4
    return loss, {"psnr": -10 * math.log10(max(mse.item(), 1e-10))}


def random_keep(shape: tuple[int, ...], device: torch.device, gen: torch.Generator) -> Tensor:
    """Blob-shaped random masks (like real ones), a random kept fraction; sometimes all kept."""
    b, t, h, w = shape
    if torch.rand(1, generator=gen).item() < 0.25:
        return torch.ones(shape, dtype=torch.bool, device=device)
    field = torch.rand(b, 1, max(1, h // 3), max(1, w // 3), generator=gen)
    field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False)
    field = field.expand(b, t, h, w) + 0.15 * torch.rand(b, t, h, w, generator=gen)
    kept = torch.empty(b, 1, 1, 1).uniform_(0.3, 1.0, generator=gen)
    cut = torch.quantile(
        field.flatten(1), 1 - kept.flatten(), dim=1
    )  # (B, B): per-item cut on the diagonal
    return (field >= cut.diagonal().view(b, 1, 1, 1)).to(device)


def dit_loss(
    model: SkipSR, hr: Tensor, lr: Tensor, step: int, temporal: float = 0.0
) -> tuple[Tensor, dict]:
    """Flow matching on kept tokens (random masks), x0 in latent space plus the decoded composite;
    with `temporal`, also the composite's frame-to-frame changes against the target's."""
    gen = torch.Generator().manual_seed(step)
    patch = model.args.dit.patch
    with torch.no_grad():
        fill = model._pad(model.upsample(lr, hr.shape[-2:]))
        c = model.condition(fill)
        z = model.vae.encode(model._pad(hr) * 2 - 1)
    c_grid, z_grid = patchify(c, patch), patchify(z, patch)
    keep = random_keep(tuple(c_grid.shape[:4]), c.device, gen)
    one_step = torch.rand(1, generator=gen).item() < 0.75  # one step is what ships
    t = torch.ones(c.shape[0]) if one_step else torch.rand(c.shape[0], generator=gen) * 0.98 + 0.02
    t = t.to(c.device)
    tokens = TokenSet.from_keep(keep, model.args.dit.window)
    noise = token_noise(keep, z_grid.shape[-1], step, z_grid.dtype)
    t_tok = t[tokens.coords[:, 0]][:, None]
    x_t = (1 - t_tok) * z_grid[keep] + t_tok * noise
    x0 = model.dit(x_t, c_grid[keep], t, tokens)
    latent = F.mse_loss(x0.float(), z_grid[keep].float())
    out = model.decode(compose(c_grid, keep, x0, patch, c.shape[1]), fill)
    out = out[:, :, : hr.shape[2]]
    out = out[..., : hr.shape[-2], : hr.shape[-1]]
    target = hr * 2 - 1
    pixel = charbonnier(out, target)
    if temporal:  # frames change as the target's do: what flicker measures
        pixel = pixel + temporal * charbonnier(out.diff(dim=2), target.diff(dim=2))
    mse = ((out.float().clamp(-1, 1) - target) ** 2).mean() / 4
    return latent + pixel, {
        "psnr": -10 * math.log10(max(mse.item(), 1e-10)),
        "kept": keep.float().mean().item(),
    }


def fill_psnr(model: SkipSR, hr: Tensor, lr: Tensor) -> tuple[Tensor, Tensor]:
    """The condition latent and the label per token: PSNR (dB) of the skip fill against the target."""
    with torch.no_grad():
        fill_in = model._pad(model.upsample(lr, hr.shape[-2:]))
        c = model.condition(fill_in)
        fill = ((model.decode(c, fill_in) + 1) / 2).clamp(0, 1)
        target = model._pad(hr)
        ft, th, tw = model.args.token_pixels
        err = (fill.float() - target.float()).pow(2).mean(1)  # (B, T, H, W)
        err = F.avg_pool3d(err[:, None], (ft, th, tw))[:, 0]  # (B, T', H', W') per token
        return c, (-10 * torch.log10(err + 1e-10)).clamp(10, 60)


def mask_loss(model: SkipSR, hr: Tensor, lr: Tensor, step: int) -> tuple[Tensor, dict]:
    c, label = fill_psnr(model, hr, lr)
    score = model.mask_predictor(c)
    loss = F.smooth_l1_loss(score, label, beta=1.0)
    return loss, {"mae_db": (score - label).abs().mean().item(), "label_db": label.mean().item()}


LOSSES: dict[str, Callable] = {"vae": vae_loss, "dit": dit_loss, "mask": mask_loss}


def train(cfg: TrainConfig, log: Callable[[str], None]) -> int:
    """One run of at most cfg.minutes; returns the step reached. Resumes from cfg.out if present.

    Under `torchrun` (WORLD_SIZE > 1) every process trains on its own GPU and its own batches, and
    gradients are averaged before each step (data parallel); rank 0 alone logs and saves.
    """
    check_pack(cfg.data)
    rank, world = start_ranks()
    device = torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if device.type == "cuda" and cfg.workers:
        # The data workers take nearly every core; host-side ops of this process (masks, the
        # loader's pinning) must not spread over all of them too, or every step waits on OpenMP.
        cores = (os.cpu_count() or 1) // world
        torch.set_num_threads(max(1, min(4, cores - cfg.workers)))
    torch.manual_seed(cfg.seed)
    model = build(cfg, device)
    net = trainable(model, cfg.stage, cfg.decoder)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in net.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step = 0
    if rank == 0:
        recover(cfg.out)  # what a killed run left: a half-written save, a save cut between renames
    if world > 1:
        dist.barrier()  # every process reads the checkpoint rank 0 has put back
    if (cfg.out / "state.json").exists():
        state = load_checkpoint(cfg.out, model, opt)
        step = state["step"]
        check_same_run(cfg, state.get("train", {}))
    log = log if rank == 0 else (lambda line: None)
    log(
        f"stage {cfg.stage}: {sum(p.numel() for p in net.parameters()):,} trainable parameters, "
        f"from step {step}, {world} process(es)"
    )
    try:
        return _loop(cfg, model, net, opt, step, device, log, rank, world)
    finally:
        if world > 1:
            dist.destroy_process_group()


def start_ranks() -> tuple[int, int]:
    """(rank, world size): (0, 1) alone, else joins the process group torchrun describes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def average_gradients(params: list[Tensor], world: int) -> None:
    """All-reduce every gradient as one flat buffer, divided by the world size."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(g)
        offset += g.numel()


def _loop(
    cfg: TrainConfig,
    model: SkipSR,
    net: torch.nn.Module,
    opt,
    step: int,
    device,
    log,
    rank: int = 0,
    world: int = 1,
) -> int:
    cache = cfg.data / ".cache"
    if rank == 0:
        cache_videos(cfg.data, cache, log=log)
    if world > 1:
        dist.barrier()
    pairs = ClipPairs(
        cfg.data,
        cache,
        cfg.batch,
        cfg.frames,
        cfg.crop,
        cfg.seed if rank == 0 else f"{cfg.seed}r{rank}",  # each process its own batches
        start=step // cfg.reuse,
        scales=cfg.scales,
        degrade=cfg.degrade,
        augment=cfg.augment,
        photo_moves=cfg.photo_moves,
        video_fraction=cfg.video_fraction,
    )
    loader = DataLoader(
        pairs,
        batch_size=None,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if cfg.workers else None,
        persistent_workers=False,
        # not forks of this process: a fork inherits the state of the threads that CUDA, PyAV's
        # decoding of the cache and torch's CPU pool started here, and a run on a fresh H200
        # machine (2026-12-01) waited forever for its first batch after the cache was made.
        # Spawned workers started there (first batch in 12 s) but one aborted in its interpreter's
        # teardown at the end; a fork server is a fresh interpreter whose forks end as forks do
        # (run on the CPU, plain and under torchrun, and on the H200 with 14 workers: 2026-12-01).
        multiprocessing_context="forkserver" if cfg.workers else None,
        timeout=DATA_TIMEOUT if cfg.workers else 0,
    )
    params = list(net.parameters())
    extra = {"temporal": cfg.temporal} if cfg.stage == "dit" else {}
    start = last_save = last_log = time.monotonic()
    history: dict[str, list[float]] = {}
    end = min(cfg.max_steps, cfg.stop_at or cfg.max_steps)
    first = True
    for hr_u8, lr_u8, _ in loader:
        if first:  # the data workers are up: where a slow start went
            log(f"first batch after {time.monotonic() - start:.0f}s ({cfg.workers} data workers)")
            first = False
        hr_batch, lr_batch = to_video(hr_u8, device), to_video(lr_u8, device)
        for view in range(step % cfg.reuse, cfg.reuse):  # a resumed run picks up mid-batch
            hr, lr = dihedral(hr_batch, view), dihedral(lr_batch, view)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                # masks, flow times and noise: drawn from the step, and the process under torchrun
                loss, stats = LOSSES[cfg.stage](model, hr, lr, step * world + rank, **extra)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:
                average_gradients(params, world)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            for key, value in {"loss": loss.item(), **stats}.items():
                history.setdefault(key, []).append(value)
            now = time.monotonic()
            if now - last_log > 20:
                log(_summary_line(step, now - start, history))
                history, last_log = {}, now
            save = now - last_save > cfg.save_every
            stop = now - start > cfg.minutes * 60 or step >= end
            save, stop = _agree(save, stop, device, world)  # rank 0's clock decides for all
            if save and rank == 0:
                _save(cfg, model, opt, step)
            if save:
                last_save = now
            if stop:
                break
        else:
            continue
        break
    if rank == 0:
        _save(cfg, model, opt, step)
        log(f"stage {cfg.stage}: saved at step {step}")
    return step


def _agree(save: bool, stop: bool, device: torch.device, world: int) -> tuple[bool, bool]:
    """Rank 0's decisions, shared with every process so they save and stop at the same step."""
    if world == 1:
        return save, stop
    flags = torch.tensor([float(save), float(stop)], device=device)
    dist.broadcast(flags, src=0)
    return bool(flags[0]), bool(flags[1])


def dihedral(video: Tensor, view: int) -> Tensor:
    """View 0 is the clip itself; 1-7 its mirror images and quarter turns (B, C, T, H, W)."""
    if view & 4:
        video = video.transpose(-2, -1)
    if view & 1:
        video = video.flip(-1)
    if view & 2:
        video = video.flip(-2)
    return video


# What a run's resume must keep to go on exactly as it began: what shapes the stream of training
# pairs and the schedule. Values are as checkpoints save them (strings); the options that came
# later hold, in checkpoints from before them, what every run then used.
RUN_SHAPING = ("batch", "frames", "crop", "seed", "reuse", "augment", "scales", "lr", "max_steps",
               "warmup", "temporal", "decoder", "degrade", "photo_moves", "video_fraction")  # fmt: skip
BEFORE_OPTION = {"degrade": "mixed", "photo_moves": "resampled", "video_fraction": "0.3"}
FLAGS = {"scales": "--scale", "decoder": "--decoder", "augment": "--augment"}


def check_same_run(cfg: TrainConfig, saved: dict) -> None:
    """Refuse to resume with any option that shapes the pairs or the schedule changed."""
    for name in RUN_SHAPING:
        before, now = saved.get(name, BEFORE_OPTION.get(name)), str(getattr(cfg, name))
        if before is not None and before != now:
            flag = FLAGS.get(name, "--" + name.replace("_", "-"))
            raise UsageError(
                f"{cfg.out} was trained with {flag} {before} (now {now}): resume it with the "
                "same, or train into another --out"
            )


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then a cosine decay to 5% at max_steps: a function of the step alone, so a
    resumed run follows the same schedule."""
    warm = min(1.0, (step + 1) / cfg.warmup)
    progress = min(1.0, step / max(1, cfg.max_steps))
    return cfg.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _summary_line(step: int, elapsed: float, history: dict[str, list[float]]) -> str:
    means = "  ".join(f"{k} {sum(v) / len(v):.4f}" for k, v in history.items())
    return f"step {step}  {elapsed:.0f}s  {means}"


def _save(cfg: TrainConfig, model: SkipSR, opt, step: int) -> None:
    extra = {
        "config": json.loads(cfg.args.to_json()),
        "stage": cfg.stage,
        "train": {k: str(v) for k, v in asdict(cfg).items()},
    }
    save_checkpoint(cfg.out, model, opt, step, extra)
    save_model(
        model, cfg.out.with_name(cfg.out.name + ".safetensors"), stage=cfg.stage, step=str(step)
    )


def validation_clips(folder: Path, frames: int = 16) -> dict[str, Tensor]:
    """Held-out media as clips (T, 3, H, W) in [0, 1]: videos' first frames, images as one frame."""
    from skipsr_cli.media.video_io import read_frames
    from skipsr_cli.train.data import IMAGE_EXT, read_image
    from skipsr_cli.train.degrade import from_uint8

    clips = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_EXT:
            clips[path.name] = from_uint8(read_image(path)[None])
        else:
            rgb = [f.rgb for _, f in zip(range(frames), read_frames(path), strict=False)]
            clips[path.name] = from_uint8(np.stack(rgb))
    return clips


@torch.no_grad()
def vae_round_trip(
    model: SkipSR, clips: dict[str, Tensor], scale: int = 2
) -> dict[str, tuple[float, float]]:
    """(fill PSNR, round-trip PSNR) in dB per held-out clip: the ceiling the VAE puts on quality.

    The fill is the bicubic upsample of the clean-track input (x`scale`); the round trip decodes
    the target's own latent (with the fill as guide, for a guided decoder): what the output would be
    if the transformer predicted the target latent exactly.
    """
    from skipsr_cli.train.degrade import TRACKS

    device = next(model.parameters()).device
    out = {}
    for name, clip in clips.items():
        h, w = clip.shape[-2:]
        clip = clip[..., : h - h % scale, : w - w % scale]
        x = clip.transpose(0, 1)[None].to(device)  # (1, 3, T, H, W)
        lr = TRACKS["clean"].apply(clip, scale).transpose(0, 1)[None].to(device)
        t, h, w = x.shape[2:]
        fill = model._pad(model.upsample(lr, (h, w)))
        z = model.vae.encode(model._pad(x) * 2 - 1, frame_slice=4)
        rec = model.decode(z, fill, frame_slice=4)
        out[name] = (_psnr(fill[:, :, :t, :h, :w], x), _psnr((rec[:, :, :t, :h, :w] + 1) / 2, x))
    out["mean"] = tuple(sum(v[i] for v in out.values()) / len(out) for i in range(2))
    return out


def _psnr(a: Tensor, b: Tensor) -> float:
    a = (a.float().clamp(0, 1) * 255).round() / 255  # as it would be written to 8-bit video
    return -10 * math.log10(max((a - b.float()).pow(2).mean().item(), 1e-12))
