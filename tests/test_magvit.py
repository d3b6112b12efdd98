"""MAGVIT-v2 tokenizer: golden conformance (tiny official model) and unit tests (layout, I/O, LFQ, checkpoints)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from showo.checkpoints import load_checked
from showo.errors import CheckpointError, ConfigError, InputError
from showo.tokenizers.image_io import mask_to_grid, postprocess, preprocess, to_uint8
from showo.tokenizers.lfq import LookupFreeQuantizer
from showo.tokenizers.magvit import MagvitConfig, MagvitV2

ATOL = 1e-4


def small_config() -> MagvitConfig:
    return MagvitConfig(encoder_ch=32, encoder_ch_mult=(1, 2), encoder_num_res_blocks=(1, 1), decoder_ch=32,
                        decoder_ch_mult=(1, 2), decoder_num_res_blocks=(1, 2), z_channels=4, resolution=8)


def small_model(seed: int = 0) -> MagvitV2:
    torch.manual_seed(seed)
    return MagvitV2(small_config()).eval()


# ---- golden: the official code on a tiny model ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_config(golden) -> MagvitConfig:
    m = golden.meta["magvit"]
    return MagvitConfig.from_official_kwargs(m["encoder_kwargs"], m["decoder_kwargs"], m["quantizer_kwargs"])


@pytest.fixture(scope="module")
def tiny(golden, tiny_config) -> MagvitV2:
    model = MagvitV2(tiny_config).eval()
    load_checked(model, golden.weights("magvit_weights.safetensors"), what="golden MAGVIT weights")
    return model


@pytest.mark.golden
def test_golden_state_dict_layout(golden, tiny):
    expected = golden.meta["magvit"]["state_dict_keys"]
    own = tiny.state_dict()
    assert list(own) == list(expected)  # same names in the same order
    assert {k: list(v.shape) for k, v in own.items()} == expected
    assert own["quantize.power_vals"].dtype == torch.int64  # the official buffer is int64 too


@pytest.mark.golden
def test_golden_encoder_and_codes(golden, tiny):
    case = golden.case("magvit")
    images = case["input.images"]
    with torch.no_grad():
        hidden = tiny.encoder(images)
        z_q, codes = tiny.encode(images)
        get_code = tiny.get_code(images)
    torch.testing.assert_close(hidden, case["output.encoder_hidden"], atol=ATOL, rtol=0)
    assert torch.equal(get_code, case["output.codes"])
    assert torch.equal(codes, case["output.encode_codes"])
    torch.testing.assert_close(z_q, case["output.encode_quantized"], atol=ATOL, rtol=0)


@pytest.mark.golden
def test_golden_decode(golden, tiny):
    case = golden.case("magvit")
    factor = tiny.config.downsample_factor
    nonsquare = case["output.decoded_nonsquare"]
    shape = (nonsquare.shape[-2] // factor, nonsquare.shape[-1] // factor)
    with torch.no_grad():
        square = tiny.decode_code(case["output.codes"])
        rect = tiny.decode_code(case["input.nonsquare_codes"], shape=shape)
    torch.testing.assert_close(square, case["output.decoded"], atol=ATOL, rtol=0)
    torch.testing.assert_close(rect, nonsquare, atol=ATOL, rtol=0)


@pytest.mark.golden
def test_golden_codebook_entries(golden, tiny):
    case = golden.case("magvit")
    expected = case["output.codebook_entries_2x2"]
    entries = tiny.quantize.get_codebook_entry(case["input.few_indices"], shape=tuple(expected.shape[-2:]))
    assert torch.equal(entries, expected)
    assert torch.equal(tiny.quantize.embedding, case["aux.embedding"])


@pytest.mark.golden
def test_golden_quantizer_forward(golden, tiny):
    case = golden.case("magvit")
    z = case["input.quantizer_z"]
    assert (z == 0).any()  # the case covers the z == 0 -> -1 / bit 0 rule
    out = tiny.quantize(z)
    torch.testing.assert_close(out.z_q, case["output.quantizer_z_q"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.quantizer_loss, case["output.quantizer_loss"], rtol=1e-4, atol=0)
    torch.testing.assert_close(out.entropy_loss, case["output.entropy_loss"], rtol=1e-4, atol=0)
    assert torch.equal(out.indices, case["output.quantizer_indices"])


@pytest.mark.golden
def test_golden_from_pretrained_official_layout(golden, tiny_config, tmp_path):
    """The hub layout: a config.json without hyper-parameters + pytorch_model.safetensors; config= gives the dims."""
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "MAGVITv2", "_diffusers_version": "0.30.1"}))
    save_file(golden.weights("magvit_weights.safetensors"), str(tmp_path / "pytorch_model.safetensors"))
    model = MagvitV2.from_pretrained(tmp_path, config=tiny_config)
    case = golden.case("magvit")
    with torch.no_grad():
        assert torch.equal(model.get_code(case["input.images"]), case["output.codes"])
    with pytest.raises(CheckpointError, match="mis-shaped|missing"):
        MagvitV2.from_pretrained(tmp_path)  # without config= the official (full-size) model is built


# ---- the official configuration ---------------------------------------------------------------------------------

def test_official_layout_matches_spec():
    """Spec 7.6: 382 tensors; spec 1.1: 95,493,513 elements. Built on the meta device (no memory)."""
    assert MagvitConfig.official() == MagvitConfig()
    with torch.device("meta"):
        model = MagvitV2()
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert len(state) == 382
    assert sum(v.numel() for v in state.values()) == 95_493_513
    assert shapes["encoder.conv_in.weight"] == (128, 3, 3, 3)
    assert sorted(k for k in shapes if "nin_shortcut.weight" in k) == [
        "decoder.up.1.block.0.nin_shortcut.weight", "decoder.up.3.block.0.nin_shortcut.weight",
        "encoder.down.1.block.0.nin_shortcut.weight", "encoder.down.3.block.0.nin_shortcut.weight"]
    assert shapes["encoder.down.1.block.0.nin_shortcut.weight"] == (256, 128, 1, 1)
    assert shapes["encoder.down.3.block.0.nin_shortcut.weight"] == (512, 256, 1, 1)
    assert shapes["decoder.up.1.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)
    assert shapes["decoder.up.3.block.0.nin_shortcut.weight"] == (256, 512, 1, 1)
    assert [len({k.split(".")[4] for k in shapes if k.startswith(f"encoder.down.{i}.block.")}) for i in range(5)] == [4, 3, 4, 3, 4]
    assert [len({k.split(".")[4] for k in shapes if k.startswith(f"decoder.up.{i}.block.")}) for i in range(5)] == [4, 4, 3, 4, 3]
    assert {k.split(".")[2] for k in shapes if ".downsample." in k} == {"0", "1", "2", "3"}
    assert {k.split(".")[2] for k in shapes if ".upsample." in k} == {"1", "2", "3", "4"}
    assert shapes["encoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert shapes["encoder.conv_out.weight"] == (13, 512, 3, 3)
    assert shapes["encoder.quant_conv.weight"] == (13, 13, 1, 1)
    assert shapes["decoder.conv_in.weight"] == (512, 13, 3, 3)
    assert shapes["decoder.conv_out.weight"] == (3, 128, 3, 3)
    assert shapes["decoder.post_quant_conv.weight"] == (13, 13, 1, 1)
    assert shapes["quantize.embedding"] == (8192, 13) and shapes["quantize.power_vals"] == (13,)
    assert not any(".attn." in k for k in shapes)  # attn_resolutions never match: only the mid attention


def test_config_dict_round_trip_and_validation():
    cfg = small_config()
    assert MagvitConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        MagvitConfig.from_dict({**cfg.to_dict(), "ch": 3})
    with pytest.raises(ConfigError, match="32"):
        MagvitConfig(encoder_ch=48)
    with pytest.raises(ConfigError, match="levels"):
        MagvitConfig(encoder_ch_mult=(1, 2), encoder_num_res_blocks=(1, 1))
    with pytest.raises(ConfigError, match="attention"):
        MagvitConfig.from_official_kwargs({"resolution": 16, "attn_resolutions": [4], "ch_mult": [1, 1, 2],
                                           "num_res_blocks": [1, 1, 1]}, {"ch_mult": [1, 1, 2], "num_res_blocks": [1, 1, 1]})


# ---- checkpoints ---------------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    model = small_model()
    out = tmp_path / "tok"
    model.save_pretrained(out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # no temp files left
    assert json.loads((out / "config.json").read_text())["showo_magvit"] == 1
    loaded = MagvitV2.from_pretrained(out)
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b)
    pixels = torch.rand(2, 3, 8, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.get_code(pixels), loaded.get_code(pixels))
        assert torch.equal(model.decode_code(torch.arange(8)[None], (2, 4)), loaded.decode_code(torch.arange(8)[None], (2, 4)))


def test_official_layout_with_config_argument(tmp_path):
    model = small_model(1)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "MAGVITv2"}))
    save_file(model.state_dict(), str(tmp_path / "pytorch_model.safetensors"))
    loaded = MagvitV2.from_pretrained(tmp_path, config=small_config())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(CheckpointError):
        MagvitV2.from_pretrained(tmp_path)  # official config: every shape differs


def test_checkpoint_errors_name_the_keys(tmp_path):
    state = small_model().state_dict()
    missing = {k: v for k, v in state.items() if k != "decoder.conv_out.bias"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys: decoder\.conv_out\.bias"):
        MagvitV2.from_pretrained(tmp_path / "missing.safetensors", config=small_config())
    shaped = dict(state, **{"encoder.conv_in.weight": torch.zeros(32, 3, 1, 1)})
    save_file(shaped, str(tmp_path / "shaped.safetensors"))
    with pytest.raises(CheckpointError, match=r"mis-shaped keys.*encoder\.conv_in\.weight \(32, 3, 1, 1\) vs \(32, 3, 3, 3\)"):
        MagvitV2.from_pretrained(tmp_path / "shaped.safetensors", config=small_config())
    bad_codebook = dict(state, **{"quantize.embedding": -state["quantize.embedding"]})
    save_file(bad_codebook, str(tmp_path / "codebook.safetensors"))
    with pytest.raises(CheckpointError, match="LFQ codebook"):
        MagvitV2.from_pretrained(tmp_path / "codebook.safetensors", config=small_config())


def test_foreign_config_json_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"ch": 64}))
    save_file(small_model().state_dict(), str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected keys: ch"):
        MagvitV2.from_pretrained(tmp_path)


# ---- LFQ ----------------------------------------------------------------------------------------------------

def test_lfq_bit_order_and_zero():
    q = LookupFreeQuantizer(4)
    assert q.codes_to_vectors(torch.tensor(5)).tolist() == [-1.0, 1.0, -1.0, 1.0]
    assert q.power_vals.tolist() == [8, 4, 2, 1]
    z = torch.tensor([0.0, 2.0, -0.5, 1e-6]).view(1, 4, 1, 1)
    out = q(z)
    assert out.z_q.flatten().tolist() == [-1.0, 1.0, -1.0, 1.0]
    assert out.indices.item() == 5


def test_lfq_codes_vectors_round_trip():
    q = LookupFreeQuantizer(8)
    codes = torch.arange(256)
    vectors = q.codes_to_vectors(codes)
    assert vectors.shape == (256, 8) and set(vectors.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(q.vectors_to_codes(vectors), codes)
    grid = q.get_codebook_entry(codes.view(2, 128), shape=(8, 16))
    assert torch.equal(q.get_indices(grid).view(2, 128), codes.view(2, 128))


def test_lfq_losses_are_differentiable():
    z = torch.randn(2, 6, 3, 3, requires_grad=True)
    out = LookupFreeQuantizer(6)(z)
    (out.z_q.sum() + out.quantizer_loss + out.entropy_loss).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    z2 = z.detach().clone().requires_grad_(True)
    LookupFreeQuantizer(6)(z2).z_q.sum().backward()
    assert torch.equal(z2.grad, torch.ones_like(z2))  # straight-through estimator


def test_decode_and_encode_input_errors():
    model = small_model()
    with pytest.raises(InputError, match="square"):
        model.decode_code(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(InputError, match="0..15"):
        model.decode_code(torch.full((1, 4), 16))
    with pytest.raises(InputError, match="does not hold"):
        model.decode_code(torch.zeros(1, 8, dtype=torch.long), shape=(3, 3))
    with pytest.raises(InputError, match="multiples of 2"):
        model.get_code(torch.zeros(1, 3, 7, 8))
    # each was a raw TypeError / RuntimeError from inside, or (uint8, NaN pixels) silently encoded
    c = model.config.z_channels
    for call, match in ((lambda: model.encode([[0.0]]), "pixels must be a tensor .*, got list"),
                        (lambda: model.get_code(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)),
                         r"pixels must be floats \(in \[-1, 1\].*\), got torch.uint8"),
                        (lambda: model.encode(torch.full((1, 3, 8, 8), float("nan"))), "pixels must be finite"),
                        (lambda: model.get_code(torch.rand(1, 3, 8, 8) * 255), r"pixels must lie in \[-1, 1\]"),
                        (lambda: model.get_code(torch.rand(0, 3, 8, 8)), "B >= 1 and H, W positive multiples"),
                        (lambda: model.get_code(torch.rand(1, 3, 0, 0)), "B >= 1 and H, W positive multiples"),
                        (lambda: model.decode([1]), "z_q must be a tensor"),
                        (lambda: model.decode(torch.zeros(1, c + 1, 4, 4)), rf"z_q must be \[B, {c}, h, w\]"),
                        (lambda: model.decode(torch.zeros(1, c, 4, 4, dtype=torch.long)), "z_q must be floats"),
                        (lambda: model.decode_code([[1, 2]]), "codes must be a tensor of integer codes, got list")):
        with pytest.raises(InputError, match=match):
            call()


def test_forward_returns_reconstruction_and_losses():
    model = small_model()
    pixels = torch.rand(2, 3, 8, 8) * 2 - 1
    recon, q = model(pixels)
    assert recon.shape == pixels.shape and q.indices.shape == (2, 1, 4, 4)
    (recon.pow(2).mean() + q.quantizer_loss + q.entropy_loss).backward()
    assert model.encoder.conv_in.weight.grad is not None


# ---- image I/O ---------------------------------------------------------------------------------------------

def test_a_sliver_of_an_image_is_refused_before_it_is_resized():
    """A 300000x1 image (under the pixel limit) was resized to 300000 x res before its centre was cut: GBs."""
    assert preprocess(Image.new("RGB", (64, 1)), 16).shape == (3, 16, 16)  # 64:1 still taken
    with pytest.raises(InputError, match="image is 300000x1: sides further apart than 64:1 are refused"):
        preprocess(Image.new("RGB", (300000, 1)), 16)


@pytest.mark.parametrize("mode,size", [("RGB", (40, 24)), ("L", (17, 33)), ("RGBA", (32, 32)), ("P", (50, 20))])
def test_preprocess_shapes_and_range(mode, size):
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    data = rng.integers(0, 256, size=(size[1], size[0], channels) if channels else (size[1], size[0]), dtype=np.uint8)
    image = Image.fromarray(data, mode="L" if mode in ("L", "P") else mode)
    if mode == "P":
        image = image.convert("P")
    x = preprocess(image, 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


def test_preprocess_center_crop_and_normalisation():
    columns = np.arange(30, dtype=np.uint8) * 8
    image = Image.fromarray(np.tile(columns, (10, 1)), mode="L")  # 30 wide, 10 high: no resize at res 10
    x = preprocess(image, 10)
    expected = torch.from_numpy(columns[10:20].astype(np.float32)) / 255 * 2 - 1
    torch.testing.assert_close(x[0, 0], expected)
    assert torch.equal(x[0], x[2])


def test_postprocess_truncates_like_official():
    pixels = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(pixels)[0, 0, :, 0].tolist() == [0, 0, 127, 255, 255]
    images = postprocess(torch.zeros(2, 3, 4, 6))
    assert len(images) == 2 and images[0].size == (6, 4) and images[0].mode == "RGB"


def test_mask_to_grid_threshold():
    white_left = np.zeros((64, 96), dtype=np.uint8)
    white_left[:, :48] = 255  # after the centre crop (cols 16..80) the white part is cols 0..31 of 64
    grid = mask_to_grid(Image.fromarray(white_left), 64, (4, 4))
    assert grid.dtype == torch.bool and grid.shape == (16,)
    assert grid.view(4, 4).tolist() == [[True, True, False, False]] * 4
    assert mask_to_grid(Image.new("L", (20, 20), 255), 16, (2, 2)).all()
    assert not mask_to_grid(Image.new("RGB", (20, 20), (0, 0, 0)), 16, (2, 2)).any()
    assert mask_to_grid(Image.new("L", (16, 16), 127), 16, (2, 2)).sum() == 0  # 127/255 < 0.5
    assert mask_to_grid(Image.new("L", (16, 16), 128), 16, (2, 2)).all()
