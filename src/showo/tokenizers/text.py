"""The text tokenizer with Show-o's added tokens, and the vocabulary layout derived from it."""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, ConfigError, InputError
from ..files import saved
from ..prompting.vocab import PAD_TOKEN, TASK_TOKENS, Vocabulary


class TextTokenizer:
    """A Hugging Face tokenizer after Show-o's `UniversalPrompting` additions (`[PAD]` then nine task tokens).

    Encoding never adds BOS: the sequence builders prepend it, exactly as the official code does.
    """

    def __init__(self, hf_tokenizer, codebook_size: int):
        tok = hf_tokenizer
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
        tok.add_tokens(list(TASK_TOKENS))
        ids = tok.convert_tokens_to_ids([PAD_TOKEN, *TASK_TOKENS])
        if tok.eos_token_id is None:
            raise ConfigError("text tokenizer has no eos token (Show-o uses <|endoftext|> as bos/eos)")
        vocab = Vocabulary.standard(text_size=ids[0], eos=tok.eos_token_id, codebook_size=codebook_size)
        expected = [vocab.pad, vocab.soi, vocab.eoi, vocab.sov, vocab.eov, vocab.t2i, vocab.mmu, vocab.t2v, vocab.v2v, vocab.lvg]
        if list(ids) != expected or len(tok) != vocab.image_offset:
            raise ConfigError(f"text tokenizer's Show-o tokens are not contiguous after the text vocabulary: {ids}")
        self.hf = tok
        self.vocab = vocab

    @staticmethod
    def locate(path: str | Path) -> Path:
        """The local directory of a tokenizer directory or hub id (fetched when it is not in the hub cache)."""
        from ..checkpoints import resolve

        path = resolve(path, allow_patterns=["tokenizer*", "vocab.json", "merges.txt", "special_tokens_map.json",
                                             "added_tokens.json"], needs=[("tokenizer.json", "vocab.json")])
        if not (path / "tokenizer.json").is_file() and not (path / "vocab.json").is_file():
            raise CheckpointError(f"no tokenizer in {path} (expected tokenizer.json or vocab.json + merges.txt)")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, codebook_size: int) -> "TextTokenizer":
        """Load from a tokenizer directory (e.g. a copy of `microsoft/phi-1_5`) or a hub id."""
        from transformers import AutoTokenizer

        path = cls.locate(path)
        try:
            hf = AutoTokenizer.from_pretrained(str(path), padding_side="left", clean_up_tokenization_spaces=False)
        except Exception as e:  # noqa: BLE001 - transformers raises many types; report one line
            raise CheckpointError(f"cannot load the text tokenizer in {path}: {e}") from None
        if not hf("a cat", add_special_tokens=False)["input_ids"]:  # transformers 5 can build empty tokenizers
            raise CheckpointError(f"the text tokenizer in {path} encodes text to nothing (incomplete files?)")
        return cls(hf, codebook_size)

    @classmethod
    def byte_level(cls, codebook_size: int) -> "TextTokenizer":
        """A byte-level tokenizer with no merges (256 bytes + <|endoftext|>): needs no files, for random
        test models and demos; real checkpoints use their own (Phi-1.5) tokenizer."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
        vocab["<|endoftext|>"] = len(vocab)
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        eos = "<|endoftext|>"
        hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos, unk_token=eos,
                                     padding_side="left", clean_up_tokenization_spaces=False)
        return cls(hf, codebook_size)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, no BOS/EOS added."""
        return list(self.hf(text, add_special_tokens=False)["input_ids"])

    def encode_text(self, text: str, what: str = "prompt") -> list[int]:
        """Token ids of user text. Text that spells a markup token ([PAD], <|soi|>, <|t2i|>, <|endoftext|>...) is
        refused: the tokenizer turns it into that token, which changes the sequence's structure (an image opened in
        a prompt made the cached and the exact t2i paths disagree; a training record would learn the markup as
        words)."""
        if not isinstance(text, str):
            raise InputError(f"{what} must be text, got {type(text).__name__}")
        ids = self.encode(text)
        # <|endoftext|> too: Phi's bos and eos, it ended the text mid-prompt (alone, it was the unguided prompt)
        ends = {self.vocab.bos, self.vocab.eos}
        markup = [i for i in ids if self.vocab.pad <= i < self.vocab.image_offset or i in ends]
        if markup:
            name = self.hf.convert_ids_to_tokens(markup[0])
            raise InputError(f"{what} contains {name}, a token of Show-o's sequence markup, not text: {text[:40]!r}")
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if isinstance(texts, str):  # it was one row per character
            raise InputError("encode_batch takes a list of texts, got one string (use encode)")
        return [list(x) for x in self.hf(list(texts), add_special_tokens=False)["input_ids"]]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of `ids`; image codes and the mask token are dropped, and with `skip_special_tokens` also eos,
        pad and the task tokens."""
        ids = [int(i) for i in ids if int(i) < self.vocab.image_offset]
        if any(i < 0 for i in ids):
            raise InputError(f"token ids must be >= 0, got {min(ids)}")
        if skip_special_tokens:
            drop = {self.vocab.eos, self.vocab.pad, *range(self.vocab.soi, self.vocab.image_offset)}
            ids = [i for i in ids if i not in drop]
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the tokenizer files (with Show-o's tokens already added; loading adds nothing twice) into
        `directory`, atomically (other files there are kept)."""
        saved(directory, "the tokenizer", self.write_files)

    def write_files(self, folder: Path) -> None:
        """The tokenizer files into `folder`, as they are (`save_pretrained` is the atomic way)."""
        self.hf.save_pretrained(str(folder))

    def __len__(self) -> int:
        return len(self.hf)
