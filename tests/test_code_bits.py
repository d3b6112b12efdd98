"""Bit-structured image-code rows (training/code_bits.py): the same start, shared learning, plain checkpoints
(exact resume: tests/test_trainer.py)."""
import json

import pytest
import torch

from showo.errors import ConfigError
from showo.model import Showo
from showo.training.checkpoint import latest_checkpoint
from showo.training.code_bits import FILE, CodeBitRows, add_code_bit_rows, remove_code_bit_rows
from showo.training.config import TrainConfig
from train_helpers import tiny_model, tiny_trainer


def _trainer(tmp, steps, seed=0, code_bit_rows=True):
    trainer = tiny_trainer(tmp, steps, seed, code_bit_rows=code_bit_rows)
    return trainer, trainer.source.vocab


def _ids(vocab, n=12):
    g = torch.Generator().manual_seed(3)
    text = torch.randint(0, vocab.text_size, (2, n // 2), generator=g)
    image = vocab.image_offset + torch.randint(0, vocab.codebook_size, (2, n // 2), generator=g)
    return torch.cat([text, image], 1)


def test_reparametrized_model_starts_as_the_same_function():
    model, vocab = tiny_model(0)
    model.eval()
    ids = _ids(vocab)
    before = model(ids)
    add_code_bit_rows(model)
    assert torch.equal(model(ids), before)
    with pytest.raises(ConfigError, match="already reparametrized"):
        add_code_bit_rows(model)
    assert sum(p.numel() for n, p in model.named_parameters() if n.endswith(".proj")) == 2 * 6 * 32  # 64 codes: 6 bits


def _unseen_code(trainer, vocab, steps):
    seen = set()
    for step in range(steps):
        for part in trainer.source.parts(step, 0, 1):
            seen |= {int(i) for i in part.ids.flatten() if vocab.image_offset <= int(i) < vocab.mask}
    unseen = sorted(set(range(vocab.image_offset, vocab.mask)) - seen)
    assert unseen
    return unseen[0]


@pytest.mark.parametrize("on", [True, False])
def test_training_moves_the_input_rows_of_codes_never_seen_only_with_code_bit_rows(tmp_path, on):
    trainer, vocab = _trainer(tmp_path, 3, code_bit_rows=on)
    code = _unseen_code(trainer, vocab, 3)
    start = trainer.showo.embed(torch.tensor([code])).detach().clone()
    trainer.train(progress=False)
    moved = not torch.equal(trainer.showo.embed(torch.tensor([code])), start)
    assert moved == on


def test_checkpoints_are_plain_show_o_weights_with_the_trained_function(tmp_path):
    trainer, vocab = _trainer(tmp_path, 4)
    trainer.train(progress=False)
    ckpt = latest_checkpoint(tmp_path)
    assert (ckpt / FILE).is_file() and not (ckpt / "model" / FILE).exists()
    plain = Showo.from_pretrained(ckpt / "model")  # strict loading: the official keys, nothing else
    assert all("parametrizations" not in k for k in plain.state_dict())
    trainer.showo.eval()
    ids = _ids(vocab)
    with torch.no_grad():
        assert torch.equal(plain(ids), trainer.showo(ids))
        remove_code_bit_rows(trainer.showo)  # what `showo train` returns: folded back, the same function
        assert trainer.showo.state_dict().keys() == plain.state_dict().keys()
        assert torch.equal(plain(ids), trainer.showo(ids))


def test_resume_with_the_other_setting_is_a_config_error(tmp_path):
    trainer, _ = _trainer(tmp_path, 1)
    trainer.train(progress=False)
    other, _ = _trainer(tmp_path, 2, code_bit_rows=False)
    with pytest.raises(ConfigError, match="another recipe \\(code_bit_rows True -> False\\)"):
        other.resume()


def test_the_shared_matrix_follows_the_weights_device_and_dtype():
    model, _ = tiny_model(0)
    add_code_bit_rows(model.double())
    proj = model.showo.lm_head.parametrizations.weight[0].proj
    assert proj.dtype == torch.float64 and proj.device == model.showo.lm_head.parametrizations.weight.original.device


def test_code_bit_rows_needs_a_power_of_two_codebook_and_no_fsdp():
    with pytest.raises(ConfigError, match="power of two"):
        CodeBitRows(0, torch.zeros(50, 8), 48)
    with pytest.raises(ConfigError, match="fsdp"):
        TrainConfig(code_bit_rows=True, distributed="fsdp")


def test_damaged_run_files_are_one_line_errors(tmp_path):
    """A truncated code_bits.safetensors was a raw SafetensorError, a damaged recipe.json a raw JSONDecodeError."""
    from showo.errors import CheckpointError
    from showo.training.code_bits import load_apart
    from showo.training.embedded import EmbeddedRecipe, check_stage_recipe

    (tmp_path / FILE).write_bytes(b"\x10\x00")
    with pytest.raises(CheckpointError, match="corrupt safetensors file"):
        load_apart(tmp_path)
    trainer = tiny_trainer(tmp_path / "run", 1)
    trainer.train(progress=False)
    (tmp_path / "run" / "recipe.json").write_text("{bad")
    with pytest.raises(CheckpointError, match="recipe.json is not valid JSON"):
        check_stage_recipe(tmp_path / "run", EmbeddedRecipe(), is_main=True, tokenizers="0")
    (tmp_path / "run" / "recipe.json").unlink()
    check_stage_recipe(tmp_path / "run", EmbeddedRecipe(), is_main=True, tokenizers="a")  # written
    with pytest.raises(ConfigError, match="tokenizers_sha256 'a' -> 'b'"):  # a retrained image tokenizer
        check_stage_recipe(tmp_path / "run", EmbeddedRecipe(), is_main=True, tokenizers="b")
    kept = json.loads((tmp_path / "run" / "recipe.json").read_text())
    del kept["tokenizers_sha256"]  # a run from before the digest was kept resumes
    (tmp_path / "run" / "recipe.json").write_text(json.dumps(kept))
    check_stage_recipe(tmp_path / "run", EmbeddedRecipe(), is_main=True, tokenizers="b")
