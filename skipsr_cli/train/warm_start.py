"""How a run starts from weights of another shape (`--init-partial`): the tensors that fit are
loaded, a decoder's first convolution that sees more neighbouring frames is widened with zero
inputs, and new residual blocks start as the identity, so the new network begins by computing
what the loaded one did."""

from __future__ import annotations

import torch
from torch import Tensor

from models import SkipSR


def new_blocks_start_as_identity(model: SkipSR, loaded: set[str]) -> None:
    """Residual blocks that --init does not hold (a deeper transformer or pixel decoder) start
    with their last layer at zero: each passes its input through unchanged, so the deeper network
    begins by computing exactly what the shallower one did, and training only adds to it."""
    zero = []
    for i, block in enumerate(model.dit.blocks):
        if f"dit.blocks.{i}.proj.weight" not in loaded:
            zero += [block.proj, block.mlp.fc2]
    if model.args.vae.kind == "pixel":
        for i, block in enumerate(model.vae.decoder.blocks):
            if f"vae.decoder.blocks.{i}.conv2.weight" not in loaded:
                zero.append(block.conv2)
    with torch.no_grad():
        for layer in zero:
            layer.weight.zero_()
            layer.bias.zero_()


def widened_inputs(model: SkipSR, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A pixel decoder that sees more neighbouring frames than the one in `state` gets the loaded
    first convolution for the inputs it had (the neighbours' inputs are ordered so that fewer are a
    prefix of more) and zero for the new ones: it starts by computing what `state` did."""
    name, vae = "vae.decoder.conv_in.weight", model.args.vae
    new, old = model.state_dict().get(name), state.get(name)
    if vae.kind != "pixel" or new is None or old is None or new.dim() != 4:
        return state
    c, had = vae.latent_channels, old.shape[1]
    fits = new.shape[0] == old.shape[0] and new.shape[2:] == old.shape[2:]
    if not fits or had >= new.shape[1] or had % (2 * c) != c:  # had 1 + 2k sets of C inputs
        return state
    grown = torch.zeros_like(new)
    grown[:, :had] = old.to(new.dtype)
    return {**state, name: grown}


def fitting_tensors(model: SkipSR, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors of `state` that the model has under the same name and shape."""
    own = model.state_dict()
    return {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
