"""Weights: safetensors with the config inside, strict keys, readable errors, never pickle."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from models import PRESETS
from skipsr_cli.errors import ModelError
from skipsr_cli.weights import (
    CONFIG_KEY,
    FORMAT,
    FORMAT_KEY,
    check_model,
    load_model,
    read_args,
    save_model,
)

# Every refusal of load_model is also check_model's, which reads only the files' headers.
LOADERS = pytest.mark.parametrize("load", [load_model, check_model], ids=["load", "check"])


def test_round_trip_rebuilds_the_same_network(tmp_path):
    model = load_model("debug", random_weights=True, seed=3)
    path = tmp_path / "w.safetensors"
    save_model(model, path)
    assert read_args(path) == PRESETS["debug"]
    loaded = load_model(weights=path)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    lr = torch.rand(1, 3, 4, 16, 16)
    assert torch.equal(model(lr, (32, 32)).frames, loaded(lr, (32, 32)).frames)


@LOADERS
def test_missing_and_unexpected_keys_are_named(load, tmp_path):
    model = load_model("debug", random_weights=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    dropped = next(iter(state))
    state.pop(dropped)
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path), metadata={CONFIG_KEY: model.args.to_json(), FORMAT_KEY: FORMAT})
    with pytest.raises(
        ModelError, match=f"missing 1 key.*{dropped}.*unexpected 1 key.*extra.weight"
    ):
        load(weights=path)


@LOADERS
def test_wrong_shape_is_named(load, tmp_path):
    model = load_model("debug", random_weights=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["dit.out.bias"] = torch.zeros(3)
    path = tmp_path / "shape.safetensors"
    save_file(state, str(path), metadata={CONFIG_KEY: model.args.to_json(), FORMAT_KEY: FORMAT})
    with pytest.raises(ModelError, match="dit.out.bias has shape"):
        load(weights=path)


@LOADERS
def test_foreign_safetensors_and_junk_are_refused(load, tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(ModelError, match="not skipsr weights"):
        load(weights=foreign)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04pickle?")
    with pytest.raises(ModelError, match="not a safetensors file"):
        load(weights=junk)
    with pytest.raises(ModelError, match="not found"):
        load(weights=tmp_path / "absent.safetensors")


@LOADERS
def test_unknown_preset(load):
    with pytest.raises(ModelError, match="unknown preset"):
        load("huge", random_weights=True)


def test_seedvr2_3b_preset_builds_at_paper_scale_on_meta():
    from models import SkipSR

    with torch.device("meta"):
        model = SkipSR(PRESETS["seedvr2-3b"])
    dit = model.dit
    assert (len(dit.blocks), dit.args.width, dit.args.heads, dit.args.head_dim) == (
        32,
        2560,
        20,
        128,
    )
    assert dit.blocks[0].mlp.fc2.in_features == 6912
    assert 2.4e9 < sum(p.numel() for p in dit.parameters()) < 2.8e9


def test_training_config_is_the_base_preset():
    from pathlib import Path

    from models import ModelArgs

    path = Path(__file__).parent.parent / "training" / "configs" / "base.json"
    assert ModelArgs.from_json(path.read_text()) == PRESETS["base"]


def test_shipped_weights_are_checked_against_their_checksums(tmp_path, monkeypatch):
    import hashlib

    import skipsr_cli.weights as weights

    model = load_model("debug", random_weights=True)
    path = tmp_path / "debug.safetensors"
    save_model(model, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  debug.safetensors\n")
    monkeypatch.setattr(weights, "SHIPPED", tmp_path)
    assert torch.equal(load_model("debug").dit.embed.weight, model.dit.embed.weight)
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  debug.safetensors\n")
    with pytest.raises(ModelError, match="corrupt"):
        load_model("debug")
    with pytest.raises(ModelError, match="corrupt"):
        check_model("debug")


@LOADERS
@pytest.mark.parametrize(
    ("part", "field", "value"),
    [("dit", "width", -256), ("dit", "heads", 0), ("dit", "head_dim", -8), ("mask", "hidden", 0)],
)
def test_a_stored_configuration_with_impossible_sizes_is_a_weights_error(
    load, tmp_path, part, field, value
):
    import json

    model = load_model("debug", random_weights=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    config = json.loads(model.args.to_json())
    config[part][field] = value
    path = tmp_path / "impossible.safetensors"
    save_file(state, str(path), metadata={CONFIG_KEY: json.dumps(config), FORMAT_KEY: FORMAT})
    with pytest.raises(ModelError, match="configuration"):
        load(weights=path)


def test_denoise_blends_two_files_tensor_by_tensor(tmp_path):
    a, b = (load_model("debug", random_weights=True, seed=s) for s in (1, 2))
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_model(a, pa)
    save_model(b, pb)
    at = lambda amount: load_model(weights=pa, denoise=amount, denoise_weights=pb).state_dict()  # noqa: E731
    zero, quarter, one = at(0.0), at(0.25), at(1.0)
    for key, tensor in a.state_dict().items():
        other = b.state_dict()[key]
        assert torch.equal(zero[key], tensor), key  # 0: the file itself
        assert torch.equal(one[key], other), key  # 1: exactly the other file
        assert torch.allclose(quarter[key], tensor + 0.25 * (other - tensor), atol=1e-6), key
    lr = torch.rand(1, 3, 4, 16, 16)
    blended = load_model(weights=pa, denoise=0.25, denoise_weights=pb)
    assert not torch.equal(blended(lr, (32, 32)).frames, a(lr, (32, 32)).frames)


@LOADERS
def test_denoise_is_refused_where_it_means_nothing(load, tmp_path):
    a = load_model("debug", random_weights=True)
    pa = tmp_path / "a.safetensors"
    save_model(a, pa)
    other = tmp_path / "other.safetensors"
    save_model(load_model("base", random_weights=True), other)  # another network
    with pytest.raises(ModelError, match="between 0 and 1"):
        load(weights=pa, denoise=1.5, denoise_weights=pa)
    with pytest.raises(ModelError, match="between 0 and 1"):
        load(weights=pa, denoise=float("nan"), denoise_weights=pa)
    with pytest.raises(ModelError, match="needs --denoise-weights"):
        load(weights=pa, denoise=0.5)
    with pytest.raises(ModelError, match="not with --random-weights"):
        load("debug", random_weights=True, denoise=0.5)
    with pytest.raises(ModelError, match="another network"):
        load(weights=pa, denoise=0.5, denoise_weights=other)
    with pytest.raises(ModelError, match="weights not found"):
        load(weights=pa, denoise=0.5, denoise_weights=tmp_path / "none.safetensors")
    state = {k: v.contiguous() for k, v in a.state_dict().items()}
    dropped = next(iter(state))
    state.pop(dropped)
    short = tmp_path / "short.safetensors"  # the same network, a tensor short
    save_file(state, str(short), metadata={CONFIG_KEY: a.args.to_json(), FORMAT_KEY: FORMAT})
    with pytest.raises(ModelError, match=f"short.safetensors does not match.*{dropped}"):
        load(weights=pa, denoise=0.5, denoise_weights=short)


@LOADERS
def test_a_cut_short_file_is_refused(load, tmp_path):
    path = tmp_path / "cut.safetensors"
    save_model(load_model("debug", random_weights=True), path)
    path.write_bytes(path.read_bytes()[:-100])  # a copy that stopped early
    with pytest.raises(ModelError, match="cannot read weights"):
        load(weights=path)


def test_check_model_reads_headers_only(tmp_path, monkeypatch):
    """check_model takes no tensor from any file (a Ray driver may check a 3B network), and
    passes what load_model loads: a saved file, the shipped preset, and its blend."""
    import skipsr_cli.weights as weights

    real = weights.safe_open

    class HeadersOnly:
        def __init__(self, *args, **kwargs):
            self._file = real(*args, **kwargs)

        def __enter__(self):
            self._open = self._file.__enter__()
            return self

        def __exit__(self, *exc):
            return self._file.__exit__(*exc)

        def __getattr__(self, name):
            if name == "get_tensor":
                raise AssertionError("a tensor was read")
            return getattr(self._open, name)

    path = tmp_path / "w.safetensors"
    save_model(load_model("debug", random_weights=True), path)
    monkeypatch.setattr(weights, "safe_open", HeadersOnly)
    check_model(weights=path)
    check_model("base")
    check_model("base", denoise=1.0)
    check_model("debug", random_weights=True)
    with pytest.raises(AssertionError, match="a tensor was read"):  # the wrapper does catch reads
        load_model(weights=path)
