"""Tiny randomly initialised Show-o components, for tests and for trying the API without any weights.

Random weights produce noise images and gibberish text: use these to exercise code paths, never to judge
quality. Everything is built in memory (byte-level tokenizer, no files).
"""
from __future__ import annotations

import torch

from .backbone import PhiConfig
from .model import Showo, ShowoConfig
from .pipelines import ShowoPipeline
from .prompting.vocab import NUM_NEW_SPECIAL_TOKENS
from .tokenizers.magvit import MagvitConfig, MagvitV2
from .tokenizers.text import TextTokenizer


def tiny_magvit_config(codebook_dim: int = 6) -> MagvitConfig:
    """A 4x-downsampling MAGVIT-v2 (3 levels, 32 channels)."""
    return MagvitConfig(encoder_ch=32, encoder_ch_mult=(1, 1, 2), encoder_num_res_blocks=(1, 1, 1),
                        decoder_ch=32, decoder_ch_mult=(1, 1, 2), decoder_num_res_blocks=(1, 1, 1),
                        z_channels=codebook_dim, resolution=16)


def tiny_random_pipeline(seed: int = 0, grid: int = 4, codebook_dim: int = 6, hidden: int = 64, layers: int = 2,
                         heads: int = 4, max_seq_length: int = 32) -> ShowoPipeline:
    """A complete pipeline with random weights: `grid`x`grid` image tokens, 2**codebook_dim codes."""
    torch.manual_seed(seed)
    tokenizer = TextTokenizer.byte_level(codebook_size=2 ** codebook_dim)
    v = tokenizer.vocab
    llm = PhiConfig(vocab_size=v.size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                    num_attention_heads=heads, max_position_embeddings=512)
    config = ShowoConfig(vocab_size=v.size, llm_vocab_size=v.text_size, codebook_size=v.codebook_size,
                         num_vq_tokens=grid * grid, max_seq_length=max_seq_length, llm_model_path="tiny-random",
                         llm=llm)
    assert v.size == v.text_size + NUM_NEW_SPECIAL_TOKENS + v.codebook_size + 1
    model = Showo(config)
    for p in model.parameters():  # nn.Linear's default init gives near-uniform logits; make them peakier
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.2)
    return ShowoPipeline(model.eval(), MagvitV2(tiny_magvit_config(codebook_dim)).eval(), tokenizer,
                         model_id=f"tiny-random(seed={seed})")
