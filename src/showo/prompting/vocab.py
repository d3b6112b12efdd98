"""The Show-o token layout: text tokens, [PAD], nine task/delimiter tokens, image codes, mask token.

Every id is derived from the tokenizer (and the codebook size), never hard-coded, so the same code serves
the real Phi-1.5 layout (pad 50295, soi 50296, ..., image codes from 50305, mask 58497) and tiny test layouts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..fields import is_number

# Added by the official `UniversalPrompting` right after `[PAD]`, in this order.
TASK_TOKENS = ("<|soi|>", "<|eoi|>", "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>", "<|t2v|>", "<|v2v|>", "<|lvg|>")
PAD_TOKEN = "[PAD]"
NUM_NEW_SPECIAL_TOKENS = 1 + len(TASK_TOKENS)  # the official `num_new_special_tokens` (10)


@dataclass(frozen=True)
class Vocabulary:
    """Ids of every token kind. `eos` doubles as bos/sot/eot (`<|endoftext|>`), as in Show-o."""

    text_size: int  # `llm_vocab_size`: len(text tokenizer) before Show-o's additions
    eos: int
    pad: int
    soi: int
    eoi: int
    sov: int
    eov: int
    t2i: int
    mmu: int
    t2v: int
    v2v: int
    lvg: int
    image_offset: int  # id of image code 0
    codebook_size: int

    @property
    def bos(self) -> int:
        return self.eos

    @property
    def mask(self) -> int:
        """The mask token is the last id of the vocabulary."""
        return self.image_offset + self.codebook_size

    @property
    def size(self) -> int:
        """Rows of the embedding / columns of the LM head (`vocab_size`)."""
        return self.mask + 1

    @classmethod
    def standard(cls, text_size: int, eos: int, codebook_size: int) -> "Vocabulary":
        """The layout the official `UniversalPrompting` produces on a tokenizer of `text_size` tokens."""
        for name, value in (("text_size", text_size), ("eos", eos), ("codebook_size", codebook_size)):
            if not is_number(value, integer=True) or value < (1 if name != "eos" else 0):
                # a negative codebook made the mask id collide with <|t2i|>
                raise ConfigError(f"{name} must be an integer >= {1 if name != 'eos' else 0}, got {value!r}")
        ids = {name: text_size + 1 + i for i, name in enumerate(("soi", "eoi", "sov", "eov", "t2i", "mmu", "t2v", "v2v", "lvg"))}
        return cls(text_size=text_size, eos=eos, pad=text_size, image_offset=text_size + NUM_NEW_SPECIAL_TOKENS,
                   codebook_size=codebook_size, **ids)

    def is_image(self, ids: torch.Tensor) -> torch.Tensor:
        """True where `ids` are image codes (not the mask token)."""
        return (ids >= self.image_offset) & (ids < self.mask)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Image codes (0..codebook_size-1) to token ids."""
        return codes + self.image_offset

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids of image codes back to codes (mask tokens become `codebook_size`)."""
        return ids - self.image_offset
