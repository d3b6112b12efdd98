"""Training a byte-level BPE text tokenizer (with the `tokenizers` library) for models trained from scratch.

Byte-level like Phi-1.5's, so any text encodes; `<|endoftext|>` is bos = eos as in Show-o. The result is a
`TextTokenizer` (Show-o's `[PAD]` and task tokens are added after the learned vocabulary).
"""
from __future__ import annotations

from typing import Iterable

from ..tokenizers.text import TextTokenizer

EOS = "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int, codebook_size: int) -> TextTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS,
                                 padding_side="left", clean_up_tokenization_spaces=False)
    return TextTokenizer(hf, codebook_size)
