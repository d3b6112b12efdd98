import pytest

from showo.prompting.vocab import Vocabulary


@pytest.mark.golden
def test_layout_matches_golden(golden, golden_tokenizer):
    lay = golden.layout
    v = golden_tokenizer.vocab
    sp = lay["special_token_ids"]
    assert v.text_size == lay["llm_vocab_size"]
    assert (v.pad, v.soi, v.eoi, v.sov, v.eov) == (sp["<|pad|>"], sp["<|soi|>"], sp["<|eoi|>"], sp["<|sov|>"], sp["<|eov|>"])
    assert (v.t2i, v.mmu, v.t2v, v.v2v, v.lvg) == (sp["<|t2i|>"], sp["<|mmu|>"], sp["<|t2v|>"], sp["<|v2v|>"], sp["<|lvg|>"])
    assert v.eos == sp["<|eot|>"] == sp["<|sot|>"]
    assert v.image_offset == lay["image_token_offset"] == len(golden_tokenizer)
    assert v.mask == lay["mask_token_id"] and v.size == lay["vocab_size"]


def test_real_phi_layout():
    # The official 256/512 checkpoints: phi-1.5 has 50295 text tokens, eos 50256, 8192 codes.
    v = Vocabulary.standard(text_size=50295, eos=50256, codebook_size=8192)
    assert (v.pad, v.soi, v.eoi, v.t2i, v.mmu, v.lvg) == (50295, 50296, 50297, 50300, 50301, 50304)
    assert v.image_offset == 50305 and v.mask == 58497 and v.size == 58498


def test_tokenizer_encodes_without_bos(golden_tokenizer):
    ids = golden_tokenizer.encode("a cat")
    assert ids and golden_tokenizer.vocab.eos not in ids
    assert golden_tokenizer.decode(ids) == "a cat"


def test_byte_level_tokenizer_needs_no_files():
    from showo.tokenizers.text import TextTokenizer

    tok = TextTokenizer.byte_level(codebook_size=32)
    ids = tok.encode("a red cube, é")
    assert len(ids) == len("a red cube, é".encode())
    assert tok.decode(ids) == "a red cube, é"
    v = tok.vocab
    assert (v.text_size, v.pad, v.image_offset, v.mask, v.size) == (257, 257, 267, 299, 300)


def test_tokenizer_directory_errors(tmp_path):
    from showo.errors import CheckpointError
    from showo.tokenizers.text import TextTokenizer

    with pytest.raises(CheckpointError, match="no tokenizer"):
        TextTokenizer.from_pretrained(tmp_path, codebook_size=8)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="cannot load"):
        TextTokenizer.from_pretrained(tmp_path, codebook_size=8)


def test_saved_tokenizer_reloads_with_same_layout(tmp_path, golden_tokenizer):
    from showo.tokenizers.text import TextTokenizer

    golden_tokenizer.save_pretrained(tmp_path)
    again = TextTokenizer.from_pretrained(tmp_path, codebook_size=golden_tokenizer.vocab.codebook_size)
    assert again.vocab == golden_tokenizer.vocab
    assert again.encode("a red house") == golden_tokenizer.encode("a red house")


@pytest.mark.parametrize("size", [-5, 0, 1.5, "64"])
def test_a_codebook_size_that_is_not_a_positive_integer_is_refused(size):
    """A negative one made the mask id collide with <|t2i|>; a string failed deep inside."""
    from showo.errors import ConfigError
    from showo.tokenizers.text import TextTokenizer

    with pytest.raises(ConfigError, match="codebook_size must be an integer >= 1"):
        TextTokenizer.byte_level(size)
