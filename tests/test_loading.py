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


@pytest.mark.golden
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_sharded_checkpoint_loads_and_a_missing_shard_is_named(golden, tmp_path, fmt):
    """transformers' sharded layout (`<name>.index.json` + shards) loads as the single file does."""
    directory = official_checkpoint_dir(golden, tmp_path / "ckpt")
    single = Showo.from_pretrained(directory).state_dict()
    state = read_state_dict(directory / "pytorch_model.safetensors")
    (directory / "pytorch_model.safetensors").unlink()
    keys = sorted(state)
    name = "model.safetensors" if fmt == "safetensors" else "pytorch_model.bin"
    shards = {f"{name.split('.')[0]}-0000{i + 1}-of-00002.{fmt}": keys[i::2] for i in range(2)}
    for shard, names in shards.items():
        part = {k: state[k] for k in names}
        save_file(part, str(directory / shard)) if fmt == "safetensors" else torch.save(part, directory / shard)
    index = directory / f"{name}.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {k: s for s, names in shards.items() for k in names}}))
    sharded = Showo.from_pretrained(directory).state_dict()
    assert sharded.keys() == single.keys() and all(torch.equal(sharded[k], single[k]) for k in single)
    (directory / next(iter(shards))).unlink()
    with pytest.raises(CheckpointError, match=f"shard {next(iter(shards))} named in {index} is missing"):
        Showo.from_pretrained(directory)
    for weight_map, match in (({"a": "../elsewhere.bin"}, "names '../elsewhere.bin' as a shard"),
                              ({"a": index.name}, "as a shard: not a weight file"), ({}, "has no weight_map")):
        index.write_text(json.dumps({"weight_map": weight_map}))
        with pytest.raises(CheckpointError, match=match):
            Showo.from_pretrained(directory)


def test_lfs_pointers_and_garbage_are_not_called_unsafe(tmp_path):
    """A clone without git-lfs holds pointers; a damaged .bin is damaged, not a code-running pickle."""
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 5800000000\n"
    for name in ("pytorch_model.bin", "model.safetensors"):
        (tmp_path / name).write_bytes(pointer)
        with pytest.raises(CheckpointError, match=f"{tmp_path / name} is a Git LFS pointer, not the weights: run "
                                                  "`git lfs pull`"):
            read_state_dict(tmp_path / name)
    for content in (bytes(range(256)) * 4, b"hello, this is text", b""):
        (tmp_path / "garbage.bin").write_bytes(content)
        with pytest.raises(CheckpointError) as e:
            read_state_dict(tmp_path / "garbage.bin")
        assert str(e.value) == f"cannot read {tmp_path / 'garbage.bin'}: not a PyTorch weight file (damaged, or " \
                               "another format)"


def test_a_typo_in_a_local_path_is_not_looked_up_on_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("asked the hub"))
    with pytest.raises(CheckpointError, match=r"model path not found: checkpoints/show-o \(checkpoints/ has no "
                                              r"show-o; a hub id is looked up only when"):
        resolve("checkpoints/show-o")


def test_an_incomplete_hub_cache_is_not_taken_for_the_checkpoint(tmp_path, monkeypatch):
    """Only config.json cached (by a tool that read just that, or an interrupted download): the weights are
    fetched, or with HF_HUB_OFFLINE the error says what the cache lacks."""
    from showo.checkpoints import CHECKPOINT_FILES

    snapshot = tmp_path / "hub" / "models--showlab--show-o" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve("showlab/show-o") == snapshot  # nothing needed: what is cached is taken
    with pytest.raises(OfflineError, match=r"^showlab/show-o is not a local directory and is only partly in the hub "
                                           r"cache \(no pytorch_model.safetensors or model.safetensors or "
                                           r"pytorch_model.bin \(or a sharded index\)\) \(HF_HUB_OFFLINE is set\)$"):
        resolve("showlab/show-o", needs=CHECKPOINT_FILES)
    import huggingface_hub

    online: list[bool] = []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "snapshot_download",  # offline, it hands back what it has cached
                        lambda repo, allow_patterns, local_files_only=False: online.append(not local_files_only)
                        or str(snapshot))
    with pytest.raises(OfflineError, match=r"\), and the Hugging Face hub did not give the rest \(no network"):
        resolve("showlab/show-o", needs=CHECKPOINT_FILES)
    assert online == [False, True]  # the cache, then the hub
    (snapshot / "model.safetensors").write_bytes(b"")
    assert resolve("showlab/show-o", needs=CHECKPOINT_FILES) == snapshot


def test_folders_in_the_wrong_place_are_named(tmp_path):
    """A MAGVIT-v2 folder given as the model; an official train.py checkpoint-N/ (weights in unwrapped_model/);
    a config error says which config.json."""
    (tmp_path / "magvitv2").mkdir()
    (tmp_path / "magvitv2" / "config.json").write_text(json.dumps({"_class_name": "MAGVITv2"}))
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'magvitv2'} is an image tokenizer .MAGVIT-v2., not a "
                                              "Show-o checkpoint: give it as vq="):
        Showo.from_pretrained(tmp_path / "magvitv2")
    run = tmp_path / "checkpoint-10000"
    (run / "unwrapped_model").mkdir(parents=True)
    (run / "unwrapped_model" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=f"did you mean {run / 'unwrapped_model'}"):
        Showo.from_pretrained(run)
    (run / "unwrapped_model" / "config.json").write_text(json.dumps({"vocab_size": "365", "llm_vocab_size": 290}))
    with pytest.raises(ConfigError, match=f"^{run / 'unwrapped_model' / 'config.json'}: vocab_size must be an integer"):
        Showo.from_pretrained(run / "unwrapped_model")


@pytest.fixture
def saved_model_dir(tmp_path):
    from showo.tiny import tiny_random_pipeline

    tiny_random_pipeline(seed=0).save_pretrained(tmp_path / "pipe")
    return tmp_path / "pipe"


def test_a_missing_default_part_is_named_before_the_model_loads(tmp_path, monkeypatch, saved_model_dir):
    """No vq given: the error names vq (the user never typed showlab/magvitv2), before any Show-o weight is read."""
    import huggingface_hub

    import showo.model.showo as showo_module
    from showo.pipelines import ShowoPipeline

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setattr(showo_module, "read_state_dict", lambda *a: pytest.fail("read the Show-o weights first"))
    with pytest.raises(OfflineError, match=r"^no vq given, so its default was tried: .*; give a local directory as "
                                           r"vq= \(--vq\)$"):
        ShowoPipeline.from_pretrained(saved_model_dir / "showo")
    with pytest.raises(OfflineError, match=r"^no tokenizer given, so its default was tried: "):
        ShowoPipeline.from_pretrained(saved_model_dir / "showo", vq=saved_model_dir / "magvit")
