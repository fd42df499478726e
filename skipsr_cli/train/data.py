"""Training data: the validation split, a compact pack of the sources, and a stream of clip pairs.

A pair is a high-resolution clip (T frames) and its degraded low-resolution version. Clips come
from real videos, and from still photos under a moving camera, so temporal behaviour is learnt from
photos too: by default whole-pixel pans that keep the photo's pixels exact (`exact_photo_clip`).
Every batch is a pure function of (seed, step): resuming at step k reproduces exactly the batches a run without interruption would see.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from skipsr_cli.errors import InputError
from skipsr_cli.media.video_io import rgb8
from skipsr_cli.train.checkpoint import sweep, temporary
from skipsr_cli.train.degrade import from_uint8, random_degrade, resize

# Held out: never trained on, used for every validation figure.
VALIDATION = (
    "video/gh_sam2/bedroom.mp4",
    "images/deb_mate-backgrounds/Garden.jpg",
    "images/deb_plasma-workspace-wallpapers/ColorfulCups_2560x1600.jpg",
    "images/deb_lomiri-wallpapers-16.04/friends_by_Aitzol_Berasategi.jpg",
    "images/pypi_scikit-image/astronaut.png",
)
IMAGE_EXT = {".jpg", ".jpeg", ".png"}
VIDEO_EXT = {".mp4", ".webm", ".mkv", ".mov", ".avi"}


def split(root: Path) -> tuple[list[Path], list[Path]]:
    """(training files, validation files) under a folder laid out like shared/data/train.

    A folder of images under `video/` is one clip (a frame sequence, as DAVIS ships), not photos.
    """
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXT | VIDEO_EXT)
    clips = frame_sequences(root)
    files = sorted([p for p in files if p.parent not in clips] + clips)
    held = {root / v for v in VALIDATION}
    return [p for p in files if p not in held], [p for p in files if p in held]


def frame_sequences(root: Path) -> list[Path]:
    """Folders under root/video whose files are all images: one clip each, frames in name order."""
    videos = root / "video"
    if not videos.is_dir():
        return []
    return sorted(
        d
        for d in videos.rglob("*")
        if d.is_dir()
        and any(d.iterdir())
        and all(f.is_file() and f.suffix.lower() in IMAGE_EXT for f in d.iterdir())
    )


def encode_sequence(folder: Path, dest: Path, crf: int = 12) -> None:
    """The frames of a sequence folder as one x264 clip (yuv420p at a low CRF: near-lossless)."""
    frames = [read_image(f) for f in sorted(folder.iterdir())]
    h, w = (frames[0].shape[0] // 2) * 2, (frames[0].shape[1] // 2) * 2
    with av.open(str(dest), "w") as out:
        stream = out.add_stream("libx264", rate=24, options={"crf": str(crf), "preset": "slow"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PNG or JPEG, through PyAV."""
    with av.open(str(path)) as f:
        return rgb8(next(f.decode(video=0)))


def write_jpeg(image: np.ndarray, path: Path, quality_scale: int = 2) -> None:
    """JPEG at 4:4:4 and the best mjpeg quantiser (2), so the pack adds no visible loss."""
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = image.shape[1], image.shape[0]
    codec.pix_fmt, codec.time_base = "yuvj444p", Fraction(1, 25)
    codec.options = {"qmin": str(quality_scale), "qmax": str(quality_scale)}
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj444p")
    data = b"".join(bytes(p) for p in codec.encode(frame) + codec.encode(None))
    path.write_bytes(data)


def pack(
    roots: Path | list[Path],
    dest: Path,
    max_side: int = 1280,
    native_crops: int = 0,
    crop_side: int = 384,
    sequence_crf: int = 12,
) -> dict:
    """Copy the training split of each root to `dest`, photos downscaled (antialiased) to at most
    max_side, frame sequences encoded as clips at `sequence_crf`.

    Downscaling makes sharper, cleaner targets and a pack small enough to travel to a GPU machine.
    Each photo larger than max_side also gives `native_crops` crops at its own scale (at places
    fixed by its name), so the model also sees detail as soft as a camera's, not only downscaled.
    With several roots, packed names start with the root's folder name.
    """
    roots = [roots] if isinstance(roots, Path) else roots
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "videos").mkdir(parents=True, exist_ok=True)
    manifest = {
        "source": [str(r) for r in roots] if len(roots) > 1 else str(roots[0]),
        "max_side": max_side,
        "native_crops": native_crops,
        "crop_side": crop_side,
        "files": [],
    }
    for root in roots:
        prefix = f"{root.name}__" if len(roots) > 1 else ""
        for path in split(root)[0]:
            rel = path.relative_to(root).as_posix()
            name = prefix + rel.replace("/", "__")
            if path.is_dir():
                name = f"{name}.mp4"
                encode_sequence(path, dest / "videos" / name, sequence_crf)
            elif path.suffix.lower() in VIDEO_EXT:
                shutil.copyfile(path, dest / "videos" / name)
            else:
                name = Path(name).with_suffix(".jpg").name
                pack_photo(path, dest / "images" / name, rel, max_side, native_crops, crop_side)
            parts = sorted(path.iterdir()) if path.is_dir() else [path]
            digest = hashlib.sha256(b"".join(f.read_bytes() for f in parts)).hexdigest()
            manifest["files"].append({"source": rel, "packed": name, "sha256": digest})
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def pack_photo(
    path: Path, dest: Path, rel: str, max_side: int, native_crops: int, crop_side: int
) -> None:
    """One photo, downscaled to at most max_side, and its crops at full scale beside it."""
    image = read_image(path)
    h, w = image.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    small = (
        resize(from_uint8(image[None]), size, "bicubic") if factor < 1 else from_uint8(image[None])
    )
    write_jpeg(small.mul(255).round().byte().permute(0, 2, 3, 1)[0].numpy(), dest)
    if factor < 1:
        for i, crop in enumerate(native_scale_crops(image, native_crops, crop_side, rel)):
            write_jpeg(crop, dest.with_name(f"{dest.stem}__native{i}.jpg"))


def check_pack(data: Path) -> None:
    """A clear error unless `data` is a pack with at least one photo or video to train on."""
    if not (data / "images").is_dir() or not (data / "videos").is_dir():
        raise InputError(f"{data} is not a training pack: make one with `skipsr train pack`")
    if not any((data / "images").glob("*.jpg")) and not any((data / "videos").iterdir()):
        raise InputError(f"the training pack {data} holds no photos and no videos")


def native_scale_crops(image: np.ndarray, count: int, side: int, key: str) -> list[np.ndarray]:
    """`count` crops side x side of an (H, W, 3) image at its own scale, at places drawn from `key`."""
    rng = random.Random(f"native:{key}")
    h, w = image.shape[:2]
    side = min(side, h, w)
    crops = []
    for _ in range(count):
        y, x = rng.randrange(h - side + 1), rng.randrange(w - side + 1)
        crops.append(np.ascontiguousarray(image[y : y + side, x : x + side]))
    return crops


def decode_video(path: Path, scale: float = 1.0) -> np.ndarray:
    """All frames (N, H, W, 3) uint8, optionally downscaled (antialiased) by `scale`."""
    frames = []
    with av.open(str(path)) as f:
        for frame in f.decode(video=0):
            if scale != 1.0:
                frame = frame.reformat(
                    width=round(frame.width * scale) // 2 * 2,
                    height=round(frame.height * scale) // 2 * 2,
                    interpolation="AREA",
                )
            frames.append(rgb8(frame))
    return np.stack(frames)


class Sources:
    """Decoded training media, loaded once per worker (videos memory-mapped from one shared file)."""

    def __init__(self, data: Path, cache: Path) -> None:
        self.images = [
            from_uint8(read_image(p)[None])[0] for p in sorted((data / "images").glob("*.jpg"))
        ]
        count = len(list((data / "videos").iterdir()))
        # in the order the cache's names sort in (video_0, video_1, video_10, ...), the order every
        # run so far drew its videos in: batches stay what they were for the same step
        order = sorted(range(count), key=str)
        self.videos = [np.load(cache / f"video_{i}.npy", mmap_mode="r") for i in order]


def cache_videos(
    data: Path, cache: Path, scale: float = 0.75, log: Callable[[str], None] | None = None
) -> None:
    """Decode the training videos once into .npy files that every worker memory-maps; `log` gets a
    line for each video it decodes, so a first run on a fresh pack shows where its time goes.

    The cache holds the list of videos it was made from (names and sizes) and the scale: when the
    pack's videos change, it is made again rather than loaded with files of other videos."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = sorted((data / "videos").iterdir())
    made_of = {"scale": scale, "videos": [[p.name, p.stat().st_size] for p in paths]}
    record = cache / "videos.json"
    if not record.exists() or json.loads(record.read_text()) != made_of:
        for old in cache.glob("video_*.npy"):
            old.unlink()
        record.write_text(json.dumps(made_of))
    targets = [cache / f"video_{i}.npy" for i in range(len(paths))]
    sweep(cache, targets)  # what killed runs left half written, in one listing of the cache
    for i, (path, target) in enumerate(zip(paths, targets, strict=True)):
        if not target.exists():
            # whole files only, and two runs sharing a pack (on any host) never write into one file
            partial = temporary(target)
            np.save(partial, decode_video(path, scale))
            partial.replace(target)
            if log is not None:
                log(f"cached training video {i + 1} of {len(paths)}: {path.name}")


def video_clip(video: np.ndarray, frames: int, crop: int, rng: random.Random) -> Tensor:
    """T consecutive (or every other) frames, cropped at a random place: (T, 3, crop, crop)."""
    stride = rng.choice([1, 1, 2])
    n, h, w = video.shape[:3]
    start = rng.randrange(max(1, n - stride * (frames - 1)))
    y, x = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
    clip = video[start : start + stride * frames : stride, y : y + crop, x : x + crop]
    return from_uint8(np.ascontiguousarray(clip))


def exact_photo_clip(image: Tensor, frames: int, crop: int, rng: random.Random) -> Tensor:
    """A camera pan over a still photo, (T, 3, crop, crop), whose frames are exact pixels: of the
    photo, or of a copy shrunk (antialiased) to see more of it. Each frame moves by whole
    pixels (up to MAX_PAN a frame each way), so after the downscale the input moves by fractions
    of its pixels while the target keeps every detail. (A bicubic resampling at sub-pixel places
    keeps about three quarters of the top octave's energy, measured on the pack's photos; targets
    made that way teach the model to leave that detail out.)"""
    _, h, w = image.shape
    if min(h, w) < crop:  # smaller than the crop: the resampled move, reflected at its edges
        return resampled_photo_clip(image, frames, crop, rng)
    zoom_out = rng.uniform(1.0, max(1.0, min(h, w) / (1.6 * crop)))
    source = image
    if zoom_out > 1.25:  # antialiased bicubic, as the pack shrank the photos
        source = resize(image[None], (round(h / zoom_out), round(w / zoom_out)), "bicubic")[0]
    _, h, w = source.shape  # at least 1.6 crops on its short side
    steps = []
    for side in (h, w):
        pan = rng.randint(-MAX_PAN, MAX_PAN)
        if crop + abs(pan) * (frames - 1) > side:
            pan = 0  # a small photo: hold still along this side
        start = rng.randrange(side - crop - abs(pan) * (frames - 1) + 1)
        steps.append((start if pan >= 0 else start - pan * (frames - 1), pan))
    (y0, vy), (x0, vx) = steps
    return torch.stack(
        [
            source[:, y0 + vy * t : y0 + vy * t + crop, x0 + vx * t : x0 + vx * t + crop]
            for t in range(frames)
        ]
    ).contiguous()


MAX_PAN = 3  # pixels a frame of an exact photo pan


def resampled_photo_clip(image: Tensor, frames: int, crop: int, rng: random.Random) -> Tensor:
    """A smooth synthetic camera move over a still photo: (T, 3, crop, crop), resampled (bicubic)
    at sub-pixel places with a slow zoom and spin. What `base` up to ft4m trained on (the targets
    lose some of their finest detail to the resampling: see exact_photo_clip)."""
    _, h, w = image.shape
    zoom_out = rng.uniform(
        1.0, max(1.0, min(h, w) / (1.6 * crop))
    )  # how much of the photo one crop sees
    view = crop * zoom_out
    velocity = [rng.uniform(-0.03, 0.03) * view for _ in range(2)]  # fraction of the view per frame
    zoom_rate, spin = rng.uniform(-0.015, 0.015), math.radians(rng.uniform(-0.4, 0.4))
    travel = frames * (abs(velocity[0]) + abs(velocity[1])) + view * (1.5 + frames * abs(zoom_rate))
    margin = min(h, w) / 2 - 1
    if travel / 2 > margin:  # a small photo: keep the move inside it
        velocity, zoom_rate = [0.0, 0.0], 0.0
        zoom_out = min(zoom_out, (min(h, w) - 2) / (1.5 * crop))
        view = crop * zoom_out
    half = min(margin, travel / 2)
    cy, cx = rng.uniform(half, h - half), rng.uniform(half, w - half)
    theta = []
    for t in range(frames):
        s = view * (1 + zoom_rate) ** t / 2
        a = spin * t
        ty, tx = cy + velocity[0] * t, cx + velocity[1] * t
        # affine map from the output grid [-1, 1]^2 to normalised input coordinates
        theta.append(
            [
                [s * math.cos(a) / (w / 2), -s * math.sin(a) / (w / 2), (tx - w / 2) / (w / 2)],
                [s * math.sin(a) / (h / 2), s * math.cos(a) / (h / 2), (ty - h / 2) / (h / 2)],
            ]
        )
    theta_t = torch.tensor(theta, dtype=torch.float32)  # (T, 2, 3)
    source = image
    if zoom_out > 1.25:  # shrink the photo first (antialiased) so sampling never aliases
        source = resize(image[None], (round(h / zoom_out), round(w / zoom_out)), "area")[0]
    grid = F.affine_grid(theta_t, [frames, 3, crop, crop], align_corners=False)
    out = F.grid_sample(
        source[None].expand(frames, -1, -1, -1),
        grid,
        mode="bicubic",
        padding_mode="reflection",
        align_corners=False,
    )
    return out.clamp(0, 1)


PHOTO_MOVES = {"exact": exact_photo_clip, "resampled": resampled_photo_clip}


def augment(clip: Tensor, rng: random.Random) -> Tensor:
    """One of the 8 mirror images and quarter turns of a square clip (T, 3, S, S), with its colour
    channels in one of the 6 orders: 48 variants of every source, so a few dozen photos and two
    videos stretch further before the model learns them by heart."""
    clip = torch.rot90(clip, rng.randrange(4), dims=(-2, -1))
    if rng.random() < 0.5:
        clip = clip.flip(-1)
    order = [0, 1, 2]
    rng.shuffle(order)
    return clip[:, order].contiguous()


class ClipPairs(IterableDataset):
    """Batches of (hr uint8 (B, T, 3, H, W), lr uint8 (B, T, 3, H/s, W/s), scale) for steps k = start, start+1, ..."""

    def __init__(
        self,
        data: Path,
        cache: Path,
        batch: int,
        frames: int,
        crop: int,
        seed: int | str,
        start: int,
        scales: tuple[int, ...] = (2, 4),
        video_fraction: float = 0.3,
        degrade: str = "mixed",
        augment: bool = True,
        photo_moves: str = "exact",
    ) -> None:
        super().__init__()
        self.data, self.cache, self.batch, self.frames, self.crop = data, cache, batch, frames, crop
        self.seed, self.start, self.scales, self.video_fraction, self.degrade = (
            seed,
            start,
            scales,
            video_fraction,
            degrade,
        )
        self.augment = augment
        if photo_moves not in PHOTO_MOVES:
            raise ValueError(
                f"unknown photo moves {photo_moves!r}: one of {', '.join(PHOTO_MOVES)}"
            )
        self.photo_clip = PHOTO_MOVES[photo_moves]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, int]]:
        torch.set_num_threads(1)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        sources = Sources(self.data, self.cache)
        step = self.start + worker
        while True:  # worker w makes steps w, w + W, ...: the loader returns them in step order
            yield self.make_batch(sources, random.Random(f"{self.seed}:{step}"))
            step += workers

    def make_batch(self, sources: Sources, rng: random.Random) -> tuple[Tensor, Tensor, int]:
        scale = rng.choice(self.scales)
        hrs, lrs = [], []
        for _ in range(self.batch):
            if sources.videos and rng.random() < self.video_fraction:
                hr = video_clip(rng.choice(sources.videos), self.frames, self.crop, rng)
            else:
                hr = self.photo_clip(rng.choice(sources.images), self.frames, self.crop, rng)
            if self.augment:
                hr = augment(hr, rng)
            lr = random_degrade(hr, scale, rng, self.degrade)
            hrs.append(hr.mul(255).round().byte())
            lrs.append(lr.mul(255).round().byte())
        return torch.stack(hrs), torch.stack(lrs), scale
