"""MAGVIT-v2 tokenizer training: reconstruction improves, resume is exact."""
import pytest
import torch

from showo.tiny import tiny_magvit_config
from showo.tokenizers.magvit import MagvitV2
from showo.training.tokenizer import TokenizerTrainConfig, TokenizerTrainer, evaluate_reconstruction


PALETTE = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1], [0.6, 0.6, 0.6], [-0.6, -0.6, -0.6]])


def blocks(step: int, batch: int = 8, size: int = 16) -> torch.Tensor:
    """A flat square of one palette colour on a background of another; a function of the step only."""
    g = torch.Generator().manual_seed(step)
    idx = torch.randint(0, len(PALETTE), (batch, 2), generator=g)
    x = PALETTE[idx[:, 0]][:, :, None, None].expand(batch, 3, size, size).clone()
    for b in range(batch):
        y0, x0 = torch.randint(0, size // 2, (2,), generator=g).tolist()
        x[b, :, y0:y0 + size // 2, x0:x0 + size // 2] = PALETTE[idx[b, 1]][:, None, None]
    return x


def _trainer(tmp, steps, seed=0):
    torch.manual_seed(seed)
    cfg = TokenizerTrainConfig(output_dir=str(tmp), max_steps=steps, batch_size=8, lr=3e-3, warmup_steps=5,
                               save_every=steps, log_every=10)
    return TokenizerTrainer(MagvitV2(tiny_magvit_config(8)), blocks, cfg)


def test_reconstruction_improves(tmp_path):
    t = _trainer(tmp_path, 150)
    held_out = torch.cat([blocks(10_000 + i) for i in range(2)])
    before = evaluate_reconstruction(t.model, held_out)["psnr"]
    history = t.train(progress=False)
    after = evaluate_reconstruction(t.model, held_out)
    first = sum(m["loss"] for m in history[:20]) / 20
    last = sum(m["loss"] for m in history[-20:]) / 20
    assert last < 0.85 * first, (first, last)
    assert after["psnr"] > before + 1, (before, after)
    assert after["codes_used"] > 4
    again = MagvitV2.from_pretrained(tmp_path / "checkpoint-0000150" / "model")
    assert evaluate_reconstruction(again, held_out)["psnr"] == after["psnr"]


def test_resume_is_exact(tmp_path):
    a = _trainer(tmp_path / "a", 4)
    full = a.train(progress=False)
    b = _trainer(tmp_path / "b", 4)
    b.train_step(); b.train_step()
    b.save()
    c = _trainer(tmp_path / "b", 4, seed=5)
    assert c.resume() and c.step == 2
    rest = c.train(progress=False)
    assert [m["loss"] for m in rest] == [m["loss"] for m in full[2:]]


def test_codebook_entropy_prefers_diverse_confident_codes():
    from showo.tokenizers.lfq import code_bits
    from showo.training.tokenizer import codebook_entropy_loss

    bits = code_bits(3).float()
    diverse = (bits * 2 - 1).T.reshape(1, 3, 2, 4) * 10  # all 8 codes once, confidently
    collapsed = torch.ones(1, 3, 2, 4) * 10  # one code everywhere
    torch.testing.assert_close(codebook_entropy_loss(diverse, bits), -torch.log(torch.tensor(8.0)), atol=1e-4, rtol=0)
    torch.testing.assert_close(codebook_entropy_loss(collapsed, bits), torch.tensor(0.0), atol=1e-4, rtol=0)
    unsure = torch.zeros(1, 3, 2, 4)  # every code equally likely at every position: no reward
    assert codebook_entropy_loss(unsure, bits) > codebook_entropy_loss(diverse, bits) + 1


def test_init_from_starts_from_the_saved_weights(tmp_path):
    """TokenizerTrainConfig.init_from was read only by the recipe path; a TokenizerTrainer built in Python ignored it."""
    from showo.errors import ConfigError

    base = _trainer(tmp_path / "base", 2)
    base.train(progress=False)
    base.model.eval().save_pretrained(tmp_path / "saved")
    cfg = TokenizerTrainConfig(output_dir=str(tmp_path / "next"), max_steps=1, batch_size=8,
                               init_from=str(tmp_path / "saved"))
    t = TokenizerTrainer(MagvitV2(tiny_magvit_config(8)), blocks, cfg)
    saved = base.model.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in t.model.state_dict().items())
    with pytest.raises(ConfigError, match="its architecture differs from the model's"):
        TokenizerTrainer(MagvitV2(tiny_magvit_config(6)), blocks, cfg)


def test_decoder_only_keeps_every_code_and_sharpens_the_images(tmp_path):
    """The frozen encoder and quantizer give every image the codes it had, so a Show-o trained on them stays valid;
    the decoder alone learns (here: to fit one batch)."""
    base = _trainer(tmp_path / "base", 20)
    base.train(progress=False)
    batch, held_out = blocks(7), torch.cat([blocks(10_000 + i) for i in range(2)])
    cfg = TokenizerTrainConfig(output_dir=str(tmp_path / "dec"), max_steps=40, batch_size=8, lr=3e-3, warmup_steps=5,
                               save_every=40, log_every=10, decoder_only=True)
    t = TokenizerTrainer(base.model.train(), lambda step: batch, cfg)
    frozen = {k: v.clone() for k, v in t.model.state_dict().items() if not k.startswith("decoder.")}
    codes = t.model.get_code(held_out)
    before = evaluate_reconstruction(t.model, batch)["psnr"]
    history = t.train(progress=False)
    assert all(torch.equal(v, t.model.state_dict()[k]) for k, v in frozen.items())
    assert torch.equal(t.model.get_code(held_out), codes)
    assert evaluate_reconstruction(t.model, batch)["psnr"] > before + 3, before
    assert all(m["entropy"] == 0 for m in history)


def test_edge_loss_weighs_outlines_not_flat_offsets():
    from showo.training.tokenizer import edge_l1

    image = blocks(3)
    assert edge_l1(image, image) == 0
    assert edge_l1(image + 0.3, image) < 1e-6  # a flat colour error leaves every outline where it was
    shifted = torch.roll(image, 1, dims=-1)  # the same square one pixel over: its outlines moved
    assert edge_l1(shifted, image) > 0.01


def test_edge_weight_enters_the_loss(tmp_path):
    plain = _trainer(tmp_path / "plain", 1)
    torch.manual_seed(0)
    cfg = TokenizerTrainConfig(**{**plain.cfg.__dict__, "output_dir": str(tmp_path / "edge"), "edge_weight": 2.0})
    edged = TokenizerTrainer(MagvitV2(tiny_magvit_config(8)), blocks, cfg)
    a, b = plain.train_step(), edged.train_step()
    assert a["edge"] == 0 and b["edge"] > 0
    torch.testing.assert_close(b["loss"] - a["loss"], 2.0 * b["edge"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("key, value, match", [("grad_clip", -1.0, "grad_clip must be a finite number > 0"),
                                               ("max_steps", 0, "max_steps must be >= 1"),
                                               ("batch_size", 0, "batch_size must be >= 1"),
                                               ("keep_checkpoints", 0, "keep_checkpoints must be >= 1"),
                                               ("lr", -1.0, r"lr must be in \(0, 1\]"),
                                               ("edge_weight", -2.0, "edge_weight must be a finite number >= 0"),
                                               ("min_lr_ratio", 5.0, "min_lr_ratio must be in"),
                                               ("precision", "fp16", "precision must be one of fp32, bf16, auto"),
                                               ("entropy", "bogus", "entropy must be codebook or bitwise")])
def test_config_values_are_checked(key, value, match):
    from showo.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        TokenizerTrainConfig(**{key: value})


def test_divergence_stops_the_tokenizer_before_the_step(tmp_path):
    from showo.errors import TrainingDiverged

    t = _trainer(tmp_path, 3)
    with torch.no_grad():
        next(t.model.decoder.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="step 1"):
        t.train(progress=False)
    assert not list(tmp_path.glob("checkpoint-*"))


def test_resume_refuses_another_recipe(tmp_path):
    from showo.errors import ConfigError

    t = _trainer(tmp_path, 4)
    t.train_step()
    t.save()
    other = _trainer(tmp_path, 4)
    other.cfg.edge_weight = 1.0
    with pytest.raises(ConfigError, match="edge_weight 0.0 -> 1.0"):
        other.resume()
