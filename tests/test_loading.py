"""Loading official checkpoint directories and our own saves; unsafe or broken checkpoints are refused."""
import json
import os
import warnings

import pytest
import torch
from safetensors.torch import save_file

from showo.checkpoints import read_state_dict, resolve
from showo.errors import CheckpointError, ConfigError, OfflineError
from showo.model import Showo, ShowoConfig
from golden_models import official_checkpoint_dir, showo_model


class _Payload:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.golden
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_official_directory_loads_without_conversion(golden, tmp_path, fmt):
    directory = official_checkpoint_dir(golden, tmp_path / "ckpt", fmt)
    model = Showo.from_pretrained(directory)
    d = golden.case("t2i_logits")
    with torch.no_grad():
        torch.testing.assert_close(model(d["input.input_ids"], attention_mask=d["input.attention_mask"]),
                                   d["output.logits"], atol=1e-4, rtol=0)


@pytest.mark.golden
def test_save_pretrained_round_trip_and_bf16(golden, tmp_path):
    model = showo_model(golden)
    model.save_pretrained(tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["config.json", "pytorch_model.safetensors"]
    again = Showo.from_pretrained(tmp_path / "ours")
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    half = Showo.from_pretrained(tmp_path / "ours", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    d = golden.case("t2i_logits")
    with torch.no_grad():
        out = half(d["input.input_ids"], attention_mask=d["aux.attention_mask_bool"])
    assert out.dtype == torch.float32 and (out - d["output.logits"]).abs().max() < 0.25
    model.save_pretrained(tmp_path / "ours")  # overwriting an existing save works
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_pickle_payload_in_bin_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    directory = tmp_path / "evil"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(ShowoConfig(
        vocab_size=365, llm_vocab_size=290, codebook_size=64, num_vq_tokens=16).to_dict()))
    torch.save({"showo.lm_head.bias": torch.zeros(3), "x": _Payload(marker)}, directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refused"):
        Showo.from_pretrained(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's notes on the pickle stay out of the one-line error's way
        with pytest.raises(CheckpointError, match="refused") as e:
            read_state_dict(directory / "pytorch_model.bin")
    assert "weights_only" not in str(e.value)  # no advice to load it unsafely
    assert not marker.exists()


def test_unreadable_weights_say_so(tmp_path, monkeypatch):
    import showo.checkpoints as checkpoints

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))

    def denied(name, *args, **kwargs):
        raise PermissionError(13, "Permission denied", name)

    monkeypatch.setattr(checkpoints, "load_file", denied)
    with pytest.raises(CheckpointError, match=f"cannot read {path}: permission denied"):
        read_state_dict(path)


@pytest.mark.golden
def test_missing_unexpected_and_misshaped_keys_are_named(golden, tmp_path):
    directory = official_checkpoint_dir(golden, tmp_path / "ckpt")
    state = golden.weights("showo_weights.safetensors")
    del state["showo.model.final_layernorm.bias"]
    state["showo.extra.weight"] = torch.zeros(1)
    state["showo.lm_head.bias"] = torch.zeros(7)
    save_file(state, str(directory / "pytorch_model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        Showo.from_pretrained(directory)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("missing keys: showo.model.final_layernorm.bias", "unexpected keys: showo.extra.weight",
                 "showo.lm_head.bias (7,) vs (365,)"):
        assert part in msg


def test_broken_directories_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Showo.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        Showo.from_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Showo.from_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"vocab_size": 365, "llm_vocab_size": 290,
                                                                "codebook_size": 64, "num_vq_tokens": 16,
                                                                "llm_model_path": "someone/unknown-llm"}))
    with pytest.raises(ConfigError, match="unknown backbone"):
        Showo.from_pretrained(tmp_path / "empty")
    cfg = ShowoConfig(vocab_size=365, llm_vocab_size=290, codebook_size=64, num_vq_tokens=16).to_dict()
    (tmp_path / "empty" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no weights"):
        Showo.from_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "pytorch_model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="corrupt safetensors"):
        Showo.from_pretrained(tmp_path / "empty")


def test_inconsistent_vocabulary_is_a_config_error():
    with pytest.raises(ConfigError, match="inconsistent vocabulary"):
        ShowoConfig(vocab_size=366, llm_vocab_size=290, codebook_size=64, num_vq_tokens=16)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_vq_tokens": -4}, "num_vq_tokens must be >= 1, got -4"),  # was a TypeError (its square root)
    ({"num_vq_tokens": 15}, "num_vq_tokens must be a square number, got 15"),
    ({"codebook_size": "64"}, "codebook_size must be an integer, got '64'"),
    ({"llm": {"hidden_size": 64}}, "llm must be a PhiConfig, got dict"),
])
def test_configs_built_in_python_are_checked(kwargs, match):
    from showo.backbone import PhiConfig

    with pytest.raises(ConfigError, match=match):
        ShowoConfig(**{"vocab_size": 365, "llm_vocab_size": 290, "codebook_size": 64, "num_vq_tokens": 16, **kwargs})
    with pytest.raises(ConfigError, match="sizes must be >= 1"):  # was checked only when read from a file
        PhiConfig(hidden_size=0)


def test_official_phi_config_needs_no_download():
    cfg = ShowoConfig.from_dict({"_class_name": "Showo", "codebook_size": 8192, "llm_model_path": "microsoft/phi-1_5",
                                 "llm_vocab_size": 50295, "mask_token_id": 58497, "num_vq_tokens": 256,
                                 "vocab_size": 58498, "w_clip_vit": False})
    with torch.device("meta"):
        model = Showo(cfg)
    state = model.state_dict()
    assert len(state) == 437
    assert sum(v.numel() for v in state.values()) == 1_448_176_770
    assert state["showo.model.layers.23.self_attn.q_layernorm.weight"].shape == (64,)


def test_hub_id_without_network_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(OfflineError, match="showlab/show-o"):
        resolve("showlab/show-o")
