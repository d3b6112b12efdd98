"""Bit-structured image-code rows: a training-time reparametrization for Show-o on a lookup-free quantizer.

Each image code of an LFQ tokenizer is a vector of C bits (+-1), and codes a few bits apart decode to almost the
same patch (the embedded z14 tokenizer: one bit flipped in every token of a scene moves its decoding by 32.7 dB
PSNR, about its own reconstruction error). A plain embedding table learns every code's row on its own: a row
moves only when its code is seen, and what it learns is not shared with near-duplicate codes (the z14 stage:
1,714 different codes in 30 scenes' 1,920 tokens; its input rows one bit apart have cosine 0.07, and a linear map
of the bits explains 3% of them). With `code_bit_rows`, the image rows of the input embedding and of the LM head
are trained as `table + bits @ proj`: every code seen moves the shared [C, hidden] `proj`, and with it the rows
of all codes that share its bits. `proj` starts at zero, so a run from saved weights starts from the same function.

It changes training only: checkpoints hold the summed, plain table (an ordinary Show-o directory, the official
layout), plus `code_bits.safetensors` with the table and `proj` apart, for exact resume.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..checkpoints import read_state_dict, save_weights
from ..errors import ConfigError
from ..model.showo import Showo
from ..tokenizers.lfq import code_bits

FILE = "code_bits.safetensors"
_TAG = ".parametrizations.weight."
# The two weights reparametrized (official key names).
WEIGHTS = ("showo.model.embed_tokens", "showo.lm_head")


class CodeBitRows(nn.Module):
    """Parametrization of a [vocab, hidden] weight: adds `bits(code) @ proj` to the rows of the image codes."""

    def __init__(self, offset: int, weight: torch.Tensor, codebook_size: int):
        super().__init__()
        bits = codebook_size.bit_length() - 1
        if codebook_size < 2 or 2 ** bits != codebook_size:
            raise ConfigError(f"code_bit_rows needs a lookup-free codebook (a power of two codes), got {codebook_size}")
        self.before, self.after = offset, weight.shape[0] - offset - codebook_size
        self.proj = nn.Parameter(weight.new_zeros(bits, weight.shape[1]))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(weight.device.type, enabled=False):  # the same fp32 sum that checkpoints store
            return weight + F.pad(_rows(self.proj).to(weight.dtype), (0, 0, self.before, self.after))


def _rows(proj: torch.Tensor) -> torch.Tensor:
    """[2^C, hidden]: every code's bits (+-1) times `proj`."""
    return (code_bits(proj.shape[0]).to(proj) * 2 - 1) @ proj


def add_code_bit_rows(model: Showo) -> None:
    """Reparametrize the image rows of `model`'s input embedding and LM head (before building the optimizer)."""
    c = model.config
    for name in WEIGHTS:
        module = model.get_submodule(name)
        if parametrize.is_parametrized(module, "weight"):
            raise ConfigError(f"{name} is already reparametrized")
        parametrize.register_parametrization(module, "weight",
                                             CodeBitRows(c.image_token_offset, module.weight, c.codebook_size))


def remove_code_bit_rows(model: Showo) -> None:
    """Fold the reparametrization back into plain tables (after training): the same function, official keys."""
    for name in WEIGHTS:
        module = model.get_submodule(name)
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def split_state(state: dict[str, torch.Tensor], offset: int) -> tuple[dict, dict]:
    """A full state dict of a reparametrized model -> (the plain Show-o state with the summed tables under the
    official keys, the reparametrized tensors apart). A state without reparametrization comes back whole."""
    plain = {k: v for k, v in state.items() if _TAG not in k}
    apart = {k: v for k, v in state.items() if _TAG in k}
    for name in WEIGHTS:
        if f"{name}{_TAG}original" in apart:
            original, proj = apart[f"{name}{_TAG}original"], apart[f"{name}{_TAG}0.proj"]
            summed = original.clone()
            summed[offset:offset + 2 ** proj.shape[0]] += _rows(proj).to(original.dtype)
            plain[f"{name}.weight"] = summed
    return plain, apart


def join_state(plain: dict[str, torch.Tensor], apart: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `split_state`: the state dict to load into a reparametrized model."""
    replaced = {f"{name}.weight" for name in WEIGHTS if f"{name}{_TAG}original" in apart}
    return {**{k: v for k, v in plain.items() if k not in replaced}, **apart}


def save_apart(directory: Path, apart: dict[str, torch.Tensor]) -> None:
    if apart:
        save_weights({k: v.contiguous() for k, v in apart.items()}, directory / FILE)


def load_apart(directory: Path) -> dict[str, torch.Tensor]:
    path = directory / FILE
    return read_state_dict(path) if path.is_file() else {}  # a damaged file is a one-line CheckpointError
