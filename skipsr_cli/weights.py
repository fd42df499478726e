"""One loader for a preset name or a weights path. Safetensors only: nothing is ever unpickled.

A weights file carries its `ModelArgs` as JSON in the safetensors metadata, so the file alone
rebuilds its network. The network is built on the meta device and the tensors are loaded straight
onto the target device; keys are strict and a mismatch names the missing and unexpected keys.

A preset may ship a second set of weights for compressed sources (`base_denoise.safetensors`: the
same network fine-tuned on inputs that went through x264 at CRF 8 to 30). `denoise` in [0, 1] blends
every tensor of the two, 0 being the preset's own weights and 1 the companion's (network
interpolation: both are fine-tunes of one network, so every blend is a working network too;
`Blends`).
`--denoise auto` takes the amount from the source's own quantiser (`auto_denoise`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from models import PRESETS, ModelArgs, SkipSR
from skipsr_cli.errors import ModelError

CONFIG_KEY = "skipsr.config"
FORMAT_KEY = "skipsr.format"
FORMAT = "1"
SHIPPED = Path(__file__).parent / "weights"  # weights that ship inside the package
# --denoise auto: 0 up to a mean H.264 QP of QP_CLEAN, 1 from QP_WEB, linear between. On the
# held-out clips' evaluation tracks x264 CRF 12 reads as QP 12-18 and CRF 28 as 30-35 (20-24 on
# a static portrait, where x264 spends more bits on what later frames reuse).
QP_CLEAN, QP_WEB = 19.0, 29.0


def shipped_path(preset: str) -> Path:
    return SHIPPED / f"{preset}.safetensors"


def denoise_path(preset: str) -> Path:
    """The preset's weights for compressed sources, where it ships them."""
    return SHIPPED / f"{preset}_denoise.safetensors"


def blend_target(preset: str, weights: Path | None, denoise_weights: Path | None) -> Path | None:
    """The file --denoise blends towards: `denoise_weights`, else the preset's own where it ships
    one; None for a weights file of one's own without `denoise_weights`, or a preset without."""
    if denoise_weights is not None:
        return denoise_weights
    if weights is not None:
        return None
    path = denoise_path(preset)
    return path if path.exists() else None


def load_model(
    preset: str = "base",
    weights: Path | None = None,
    *,
    random_weights: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    denoise: float = 0.0,
    denoise_weights: Path | None = None,
) -> SkipSR:
    """Build the model from a weights file, the preset's shipped weights, or random weights;
    with `denoise` > 0, blended towards the weights for compressed sources (`denoise_weights`, or
    the preset's own)."""
    _check_amount(denoise, random_weights)
    if random_weights:
        with torch.device(device):  # built where it runs: no host copy of a 3B network
            model = SkipSR(_preset_args(preset))
        model.init_weights(seed)
        return model.to(dtype).eval()
    path = _weights_path(preset, weights)
    if denoise == 0:
        return _load_file(path, torch.device(device), dtype)
    blends = Blends(preset, weights, device=device, dtype=dtype, denoise_weights=denoise_weights)
    return blends.at(denoise)


def _check_amount(denoise: float, random_weights: bool = False) -> None:
    if not 0.0 <= denoise <= 1.0:  # also refuses NaN
        raise ModelError(f"denoise must be between 0 and 1, not {denoise}")
    if random_weights and denoise > 0:
        raise ModelError("--denoise blends trained weights: not with --random-weights")


def _weights_path(preset: str, weights: Path | None) -> Path:
    path = weights if weights is not None else shipped_path(_checked_preset(preset))
    if weights is None and not path.exists():
        raise ModelError(
            f"no trained weights ship for preset {preset!r} yet: pass --weights PATH, or "
            "--random-weights to run the untrained network (tests and benchmarks only)"
        )
    if weights is None:
        verify_checksum(path)
    return path


def _denoise_weights_path(preset: str, weights: Path | None, denoise_weights: Path | None) -> Path:
    path = blend_target(preset, weights, denoise_weights)
    if path is None and weights is not None:
        raise ModelError(
            "--denoise with --weights needs --denoise-weights: the file to blend towards"
        )
    if path is None:
        raise ModelError(f"preset {preset!r} ships no weights for --denoise")
    if denoise_weights is None:  # a shipped file
        verify_checksum(path)
    return path


def auto_denoise(qp: float | None) -> float:
    """The --denoise amount for a source whose mean H.264 QP is `qp` (None: no estimate, 0)."""
    if qp is None:
        return 0.0
    return min(1.0, max(0.0, (qp - QP_CLEAN) / (QP_WEB - QP_CLEAN)))


class Blends:
    """One network that takes any blend of two weights files of it, each read once: what a batch or
    an evaluation with --denoise auto runs, every source at its own amount. `at(amount)` sets every
    tensor to start + amount x (end - start), worked out in fp32 a tensor at a time from the two
    files' tensors as stored (kept on the host: no fp32 copy of a whole network), then cast."""

    def __init__(
        self,
        preset: str = "base",
        weights: Path | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        denoise_weights: Path | None = None,
    ) -> None:
        path = _weights_path(preset, weights)
        other = _denoise_weights_path(preset, weights, denoise_weights)
        _check_blendable(path, other)
        self.model = _load_file(path, torch.device(device), dtype)  # amount 0
        self.amount = 0.0
        _checked_file(other)  # the same network's tensors, each at its shape
        starts, ends = _stored_tensors(path), _stored_tensors(other)
        self._ends = {k: (starts[k], ends[k]) for k in starts}

    def at(self, amount: float) -> SkipSR:
        _check_amount(amount)
        if amount != self.amount:
            with torch.no_grad():
                for key, tensor in self.model.state_dict().items():
                    if tensor.is_floating_point():
                        start, end = self._ends[key]
                        tensor.copy_(start.float().lerp(end.float(), amount))
            self.amount = amount
        return self.model


def _stored_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        keys = list(f.keys())
        return {k: f.get_tensor(k) for k in keys}


def _checked_preset(name: str) -> str:
    if name not in PRESETS:
        raise ModelError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return name


def _preset_args(name: str) -> ModelArgs:
    return PRESETS[_checked_preset(name)]


def read_args(path: Path) -> ModelArgs:
    """The configuration stored in a weights file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except FileNotFoundError as e:
        raise ModelError(f"weights not found: {path}") from e
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read weights {path}: not a safetensors file ({e})") from e
    if meta.get(FORMAT_KEY) != FORMAT or CONFIG_KEY not in meta:
        raise ModelError(
            f"{path} is a safetensors file but not skipsr weights (no {CONFIG_KEY} metadata)"
        )
    try:
        return ModelArgs.from_json(meta[CONFIG_KEY])
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as e:
        raise ModelError(f"{path} holds a configuration this version cannot build: {e}") from e


def _load_file(path: Path, device: torch.device, dtype: torch.dtype) -> SkipSR:
    model = _checked_file(path)
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


def _checked_file(path: Path) -> SkipSR:
    """The network of a weights file, on the meta device, once the file's header shows every
    tensor that network has, at its shape, and no other: no tensor is read."""
    model = _build_on_meta(path, read_args(path))
    expected = model.state_dict()
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        _check_keys(path, set(expected), keys)
        for key in sorted(keys):
            shape, needed = tuple(f.get_slice(key).get_shape()), tuple(expected[key].shape)
            if shape != needed:
                raise ModelError(f"{path}: {key} has shape {shape}, the model needs {needed}")
    return model


def check_model(
    preset: str = "base",
    weights: Path | None = None,
    *,
    random_weights: bool = False,
    denoise: float = 0.0,
    denoise_weights: Path | None = None,
) -> None:
    """Raise the ModelError that `load_model` would, from the files' headers alone (and shipped
    files' checksums): no tensor is read and no network built but on the meta device, so a
    machine that only hands out work (a Ray driver) checks a network of any size cheaply."""
    _check_amount(denoise, random_weights)
    if random_weights:
        _preset_args(preset)
        return
    path = _weights_path(preset, weights)
    other = _denoise_weights_path(preset, weights, denoise_weights) if denoise > 0 else None
    if other is not None:
        _check_blendable(path, other)
    _checked_file(path)
    if other is not None:
        _checked_file(other)


def _check_blendable(path: Path, other: Path) -> None:
    """Two files of one network (their thresholds may differ): what a blend needs."""
    mine, theirs = read_args(path), read_args(other)
    if dataclasses.replace(mine, threshold=0.0) != dataclasses.replace(theirs, threshold=0.0):
        raise ModelError(f"{other} is another network than {path}: the two cannot be blended")


# Sizes that must be positive: zero heads or a zero-width layer is no network.
POSITIVE = frozenset(
    {"heads", "head_dim", "width", "widths", "latent_channels", "patch", "window", "spatial"}
    | {"temporal", "hidden", "mlp_hidden"}
)


def _impossible_sizes(args: object, prefix: str = "") -> list[str]:
    """`name=value` of every size in a configuration that no network can have."""
    found = []
    for f in dataclasses.fields(args):
        value, name = getattr(args, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            found += _impossible_sizes(value, f"{name}.")
            continue
        values = value if isinstance(value, tuple) else (value,)
        ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if any(v < 0 for v in ints) or (f.name in POSITIVE and any(v == 0 for v in ints)):
            found.append(f"{name}={value}")
    return found


def _build_on_meta(path: Path, args: ModelArgs) -> SkipSR:
    """The network of a stored configuration, with no memory behind it yet; a configuration that
    cannot be built (negative or zero sizes, sizes that do not divide) is a weights error."""
    impossible = _impossible_sizes(args)
    if impossible:
        raise ModelError(f"{path} holds an impossible configuration: {', '.join(impossible)}")
    try:
        with torch.device("meta"):
            return SkipSR(args)
    except (ValueError, RuntimeError, TypeError, ArithmeticError) as e:
        raise ModelError(f"{path} holds a configuration no network can have: {e}") from e


def _check_keys(path: Path, expected: set[str], found: set[str]) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:5])}")
        raise ModelError(f"{path} does not match its configuration: {'; '.join(parts)}")


def save_model(
    model: SkipSR, path: Path, dtype: torch.dtype | None = None, **metadata: str
) -> None:
    """Write weights with the configuration in the metadata (optionally cast, e.g. to bf16)."""
    state = {
        k: (v.to(dtype) if dtype else v).detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    meta = {CONFIG_KEY: model.args.to_json(), FORMAT_KEY: FORMAT, **metadata}
    save_file(state, str(path), metadata=meta)


def verify_checksum(path: Path) -> None:
    """Shipped weights are listed in SHA256SUMS beside them; a mismatch means a corrupt install."""
    sums = path.parent / "SHA256SUMS"
    if not sums.exists():
        return
    listed = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
    if path.name not in listed:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != listed[path.name]:
        raise ModelError(
            f"{path} is corrupt: its SHA-256 does not match SHA256SUMS; reinstall skipsr"
        )


def describe(model: SkipSR) -> dict:
    """Parameter counts per network, for summaries and model cards."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "config": json.loads(model.args.to_json()),
        "parameters": {
            "vae": count(model.vae),
            "mask_predictor": count(model.mask_predictor),
            "dit": count(model.dit),
        },
    }
