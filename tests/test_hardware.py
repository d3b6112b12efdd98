"""bf16 only where the hardware multiplies it natively: `precision: auto`, the warnings for an explicit bf16 (or a
half-precision model) where it is emulated, and the benchmark's bf16 rows. The CPU is simulated both ways, so
these tests mean the same on an AVX2 machine and an AMX one."""
import json
import warnings

import pytest
import torch

import showo.hardware as hardware
from showo.errors import ConfigError, ShowoWarning


@pytest.fixture(params=[True, False], ids=["native", "emulated"])
def native(request, monkeypatch):
    """The CPU as one that multiplies bf16 and fp16 natively, or one that emulates them."""
    monkeypatch.setattr(hardware, "_cpu_native", lambda dtype: request.param)
    return request.param


def _showo_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in caught if issubclass(w.category, ShowoWarning)]


def test_auto_is_bf16_only_where_native_and_explicit_bf16_is_warned_about_elsewhere(native):
    precision, said = _showo_warnings(lambda: hardware.resolve_precision("auto", "cpu"))
    assert precision == ("bf16" if native else "fp32") and said == []
    precision, said = _showo_warnings(lambda: hardware.resolve_precision("bf16", "cpu"))
    assert precision == "bf16"
    assert (said == []) if native else (len(said) == 1 and "not native on this cpu" in said[0]
                                        and "\n" not in said[0])
    assert _showo_warnings(lambda: hardware.resolve_precision("fp32", "cpu")) == ("fp32", [])
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, auto, got 'fp16'"):
        hardware.resolve_precision("fp16", "cpu")


def test_trainers_autocast_as_auto_resolves(tmp_path, native):
    """Both trainers' forward passes run under bf16 autocast exactly where `auto` resolves to bf16."""
    from train_helpers import tiny_trainer

    from showo.tiny import tiny_magvit_config
    from showo.tokenizers.magvit import MagvitV2
    from showo.training.tokenizer import TokenizerTrainConfig, TokenizerTrainer

    seen = []
    record = lambda module, args: seen.append(torch.is_autocast_enabled("cpu"))  # noqa: E731
    trainer = tiny_trainer(tmp_path / "t", 1, precision="auto")
    assert trainer.precision == ("bf16" if native else "fp32") and trainer.cfg.precision == "auto"
    trainer.showo.register_forward_pre_hook(record)
    trainer.train_step()
    images = lambda step: torch.rand(2, 3, 16, 16) * 2 - 1  # noqa: E731
    config = TokenizerTrainConfig(output_dir=str(tmp_path / "m"), max_steps=1, batch_size=2, precision="auto")
    tokenizer = TokenizerTrainer(MagvitV2(tiny_magvit_config()), images, config)
    assert tokenizer.precision == ("bf16" if native else "fp32")
    tokenizer.model.encoder.register_forward_pre_hook(record)
    tokenizer.train_step()
    assert len(seen) >= 2 and set(seen) == {native}


def test_training_configs_take_auto_and_refuse_other_precisions():
    from showo.training.config import TrainConfig
    from showo.training.tokenizer import TokenizerTrainConfig

    assert TrainConfig(precision="auto").precision == "auto"
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, auto"):
        TrainConfig(precision="half")
    with pytest.raises(ConfigError, match="tokenizer_train.precision must be one of fp32, bf16, auto"):
        TokenizerTrainConfig(precision="half")


def test_defaults_that_chose_bf16_for_speed_now_choose_auto():
    """The fine-tuning default, the embedded recipe and the demo's fine-tuning train in bf16 only where it is
    native: on an AVX2-only CPU their bf16 took minutes a step."""
    import inspect

    from showo import demo
    from showo.data.records import Record
    from showo.training.embedded import EmbeddedRecipe
    from showo.training.finetune import default_config

    assert default_config([Record(kind="lm", line=1, text="words")]).precision == "auto"
    recipe = EmbeddedRecipe()
    assert recipe.train.precision == recipe.tokenizer_train.precision == "auto"
    assert 'precision="auto"' in inspect.getsource(demo._finetune)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_pipeline_warns_when_its_transformer_is_half_precision_where_emulated(native, dtype):
    from showo.tiny import tiny_random_pipeline

    pipe, said = _showo_warnings(lambda: tiny_random_pipeline(seed=0))
    assert said == []  # float32
    _, said = _showo_warnings(lambda: pipe.to(dtype=dtype))
    name = str(dtype).removeprefix("torch.")
    assert (said == []) if native else (len(said) == 1 and said[0].startswith(f"the transformer runs in {name}, "
                                                                              f"but {name} matrix products"))


def test_cli_says_it_in_one_line(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from showo.cli.main import main

    monkeypatch.setattr(hardware, "_cpu_native", lambda dtype: False)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "im.png")
    assert main(["ask", str(tmp_path / "im.png"), "What is it?", "--model", "tiny-random", "--dtype", "bfloat16",
                 "--max-new-tokens", "2", "--out", str(tmp_path / "out"), "-q"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "not native" in line]
    assert len(lines) == 1 and lines[0].startswith("showo: warning: the transformer runs in bfloat16")


def test_bench_measures_bf16_only_where_native(native):
    from showo.bench.run import bf16_skip_reason

    cpu = torch.device("cpu")
    assert bf16_skip_reason("tiny", cpu) is None  # a check of the code paths: runs anywhere
    for mode in ("quick", "full"):
        reason = bf16_skip_reason(mode, cpu)
        assert reason is None if native else reason.endswith("not native on this cpu (PyTorch's CPU capability "
                                                              f"{torch.backends.cpu.get_cpu_capability()}): bf16 "
                                                              "rows not measured")


def test_bench_without_bf16_rows_says_why(tmp_path, monkeypatch):
    import showo.bench.run as bench_run
    from showo.cli.main import main

    monkeypatch.setattr(bench_run, "bf16_skip_reason", lambda mode, device: "bf16 rows not measured (test)")
    js, md = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["bench", "--tiny", "--only", "bf16", "batch", "--json", str(js), "--markdown", str(md)]) == 0
    data = json.loads(js.read_text())
    assert data["bf16_skipped"] == "bf16 rows not measured (test)" and data["complete"] is True
    assert "bf16_t2i_speedup" not in data and "mmu_batch8_throughput_gain_bf16" not in data
    assert data["mmu_batch8_throughput_gain"]["agree"] is True  # the fp32 rows of the section still run
    assert isinstance(data["native_bf16"], bool) and data["cpu_capability"]
    assert md.read_text().rstrip().endswith("bf16 rows not measured (test).")
