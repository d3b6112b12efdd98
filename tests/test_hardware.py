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


def _warned_once_unless(native: bool, said: list[str], start: str) -> bool:
    return said == [] if native else len(said) == 1 and said[0].startswith(start)


def test_auto_is_bf16_only_where_native_and_explicit_bf16_is_warned_about_elsewhere(native):
    precision, said = _showo_warnings(lambda: hardware.resolve_precision("auto", "cpu"))
    assert precision == ("bf16" if native else "fp32") and said == []
    precision, said = _showo_warnings(lambda: hardware.resolve_precision("bf16", "cpu"))
    assert precision == "bf16" and _warned_once_unless(native, said, "training autocasts in bfloat16, but")
    assert all("not native on this cpu" in w and "\n" not in w for w in said)
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


def test_defaults_that_chose_bf16_for_speed_now_choose_auto(tmp_path, monkeypatch):
    """The fine-tuning default, the embedded recipe and the demo's fine-tuning train in bf16 only where it is
    native: on an AVX2-only CPU their bf16 took minutes a step."""
    import showo.training.config as config_module
    from PIL import Image

    from showo import demo
    from showo.data.records import Record
    from showo.tiny import tiny_random_pipeline
    from showo.training.embedded import EmbeddedRecipe
    from showo.training.finetune import default_config

    assert default_config([Record(kind="lm", line=1, text="words")]).precision == "auto"
    recipe = EmbeddedRecipe()
    assert recipe.train.precision == recipe.tokenizer_train.precision == "auto"

    class Stop(Exception):
        pass

    asked = []

    def config(**kw):
        asked.append(kw["precision"])
        raise Stop  # before the demo's fine-tuning runs

    monkeypatch.setattr(config_module, "TrainConfig", config)
    pipe = tiny_random_pipeline(seed=0)
    with pytest.raises(Stop):
        demo._finetune(pipe, Image.new("RGB", (pipe.resolution, pipe.resolution)), tmp_path)
    assert asked == ["auto"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_pipeline_warns_when_its_transformer_is_half_precision_where_emulated(native, dtype):
    from showo.pipelines import ShowoPipeline
    from showo.tiny import tiny_random_pipeline

    pipe, said = _showo_warnings(lambda: tiny_random_pipeline(seed=0))
    assert said == []  # float32
    name = str(dtype).removeprefix("torch.")
    start = f"the transformer runs in {name}, but {name} matrix products are not native"
    _, said = _showo_warnings(lambda: pipe.to(dtype=dtype))
    assert _warned_once_unless(native, said, start) and all("--dtype float32" in w for w in said)
    assert _showo_warnings(lambda: pipe.to("cpu"))[1] == []  # nothing changed: not said again
    _, said = _showo_warnings(lambda: ShowoPipeline(pipe.model, pipe.vq, pipe.tokenizer))  # built around it
    assert _warned_once_unless(native, said, start)


def test_trainer_warns_about_explicit_bf16_where_emulated_and_resumes_by_what_auto_resolves_to(tmp_path,
                                                                                               monkeypatch):
    """A checkpoint records the precision the run trained in: `auto` resumes a bf16 run where bf16 is native
    (and a run saved as `bf16`), and refuses where it would go on in fp32."""
    from train_helpers import tiny_trainer

    monkeypatch.setattr(hardware, "_cpu_native", lambda dtype: False)
    trainer, said = _showo_warnings(lambda: tiny_trainer(tmp_path / "r", 2, precision="bf16", save_every=1))
    assert len(said) == 1 and said[0].startswith("training autocasts in bfloat16") and "precision: auto" in said[0]
    trainer.train_step()
    trainer.save()
    with pytest.raises(ConfigError, match="precision 'bf16' -> 'fp32'.*auto is bf16 only where the hardware has it"):
        tiny_trainer(tmp_path / "r", 2, precision="auto").resume()  # fp32 here
    monkeypatch.setattr(hardware, "_cpu_native", lambda dtype: True)
    resumed = tiny_trainer(tmp_path / "r", 2, precision="auto")
    assert resumed.resume() and resumed.step == 1 and resumed.precision == "bf16"


def test_tokenizer_trainer_resumes_by_what_auto_resolves_to(tmp_path, monkeypatch):
    from showo.tiny import tiny_magvit_config
    from showo.tokenizers.magvit import MagvitV2
    from showo.training.tokenizer import TokenizerTrainConfig, TokenizerTrainer

    images = lambda step: torch.rand(2, 3, 16, 16) * 2 - 1  # noqa: E731
    config = TokenizerTrainConfig(output_dir=str(tmp_path / "m"), max_steps=2, batch_size=2, precision="auto")
    trainer = lambda: TokenizerTrainer(MagvitV2(tiny_magvit_config()), images, config)  # noqa: E731
    monkeypatch.setattr(hardware, "_cpu_native", lambda dtype: True)
    first = trainer()
    first.train_step()
    first.step = 1
    first.save()
    assert trainer().resume()  # bf16 again
    monkeypatch.setattr(hardware, "_cpu_native", lambda dtype: False)
    with pytest.raises(ConfigError, match="precision 'bf16' -> 'fp32'"):
        trainer().resume()


@pytest.fixture
def fresh_cpu_check():
    hardware._cpu_native.cache_clear()
    yield
    hardware._cpu_native.cache_clear()


@pytest.mark.parametrize("machine,avx512_bf16,amx,native", [("x86_64", False, False, False), ("x86_64", True, False, True),
                                                            ("AMD64", False, True, True)])
def test_x86_bf16_is_native_with_avx512_bf16_or_amx_only(monkeypatch, fresh_cpu_check, machine, avx512_bf16, amx,
                                                         native):
    """oneDNN's own gate is not asked on x86: it also admits AVX-512 without BF16, where it emulates bf16."""
    monkeypatch.setattr(hardware.platform, "machine", lambda: machine)
    monkeypatch.setattr(hardware, "_mkldnn_gate", lambda name: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert hardware.native_bf16("cpu") is native


@pytest.mark.parametrize("flags,native", [({"avx2", "avx512f"}, False), ({"avx512f", "amx_bf16"}, True)])
def test_older_torch_reads_the_kernels_cpu_flags(monkeypatch, fresh_cpu_check, flags, native):
    monkeypatch.setattr(hardware.platform, "machine", lambda: "x86_64")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.setattr(hardware, "_linux_cpu_flags", lambda: flags)
    assert hardware.native_bf16("cpu") is native


@pytest.mark.parametrize("gate", [True, False])
def test_arm_asks_onednn_and_names_its_own_instructions(monkeypatch, fresh_cpu_check, gate):
    monkeypatch.setattr(hardware.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(hardware, "_mkldnn_gate", lambda name: gate)
    assert hardware.native_bf16("cpu") is gate
    said = _showo_warnings(lambda: hardware.warn_if_emulated(torch.bfloat16, "cpu", "it runs", "fix it"))[1]
    assert said == [] if gate else (len(said) == 1 and "native needs the CPU's bfloat16 instructions" in said[0]
                                    and "AVX-512" not in said[0] and said[0].endswith("; fix it"))


@pytest.mark.parametrize("capability,native", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_gpu_bf16_is_native_from_ampere(monkeypatch, capability, native):
    asked = []
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: asked.append(device) or capability)
    assert hardware.native_bf16("cuda:1") is native and asked == [torch.device("cuda:1")]
    assert hardware.native_products(torch.float16, "cuda") is True
    assert hardware.resolve_precision("auto", "cuda:1") == ("bf16" if native else "fp32")


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


def test_auto_device_is_the_best_one_present(monkeypatch):
    """"auto" (the CLI's default) is accepted from Python too: CUDA, then MPS, then the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hardware.check_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert hardware.check_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="not a device name"):
        hardware.check_device("autp")
