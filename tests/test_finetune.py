"""`showo finetune`: records are checked line by line, batches are a function of (seed, step, row), a run resumes
exactly and refuses other data, and a fine-tuned model learns what it was shown."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from showo.cli.main import main
from showo.data.records import load_image, read_records
from showo.errors import ConfigError, InputError
from showo.pipelines import ShowoPipeline
from showo.tiny import tiny_random_pipeline
from showo.training.config import MixConfig, OptimConfig, TrainConfig
from showo.training.finetune import default_config, finetune
from showo.training import records_source
from showo.training.records_source import RecordBatchSource
from showo.training.trainer import Trainer

TINY = ["--model", "tiny-random", "--device", "cpu"]


def write_data(root: Path, lines: list[object], images: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        colour = (60 * i, 255 - 60 * i, 90)
        Image.new("RGB", (24, 20), colour).save(root / f"im{i}.png")
    path = root / "data.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def small_records(root: Path) -> Path:
    """Text-to-image, understanding and text records short enough for the tiny model's 32-token text region."""
    return write_data(root, [
        {"image": "im0.png", "caption": "green"}, {"image": "im1.png", "caption": "teal"},
        {"image": "im2.png", "caption": "red"},
        {"image": "im0.png", "question": "Hue?", "answer": "green"},
        {"image": "im2.png", "question": "Hue?", "answer": "red"},
        "", {"text": "a few words"}])


def interrupt_after_saving(monkeypatch, step: int) -> None:
    """Ctrl-C right after the checkpoint of `step` is saved."""
    save = Trainer.save

    def stopping(self):
        save(self)
        if self.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", stopping)


def tiny_config(steps: int) -> TrainConfig:
    return TrainConfig(max_steps=steps, log_every=1, save_every=2, mix=MixConfig(t2i=2, mmu=2, lm=1),
                       optim=OptimConfig(lr=1e-3, warmup_steps=1))


@pytest.mark.parametrize("line, match", [
    ("{not json", "not valid JSON"),
    ('["image", "caption"]', "expected a JSON object"),
    ('{"image": "im0.png", "caption": "x", "image": "im1.png"}', "key 'image' is given twice"),
    ('{"text": "a\\ud800b"}', "'text' holds an unpaired surrogate escape"),
    ({"image": "im0.png"}, "none of the record kinds"),
    ({"image": "im0.png", "caption": "x", "answer": "y"}, "none of the record kinds"),
    ({"image": "im0.png", "caption": "  "}, "'caption' must be a non-empty string"),
    ({"image": "im\u0000.png", "caption": "x"}, "'image' holds a NUL character"),  # a raw ValueError
    ({"text": 3}, "'text' must be a non-empty string"),
    ({"image": "missing.png", "caption": "x"}, "not found"),
    ({"image": ".", "caption": "x"}, "is a directory, not an image file"),
])
def test_bad_records_name_the_line(tmp_path, line, match):
    path = write_data(tmp_path, [{"text": "fine"}, "", line])
    with pytest.raises(InputError, match=match) as e:
        read_records(path)
    assert f"{path}:3:" in str(e.value)


def test_line_separators_inside_strings_and_a_bom(tmp_path):
    """JSON strings may hold U+2028 / U+0085 raw (json.dumps(ensure_ascii=False) writes them so); Windows
    editors start files with a BOM. Neither splits or spoils a record."""
    path = write_data(tmp_path, [])
    text = json.dumps({"image": "im0.png", "caption": "red\u2028square\u0085"}, ensure_ascii=False)
    path.write_text("\ufeff" + text + "\r\n" + json.dumps({"text": "two"}) + "\n", encoding="utf-8")
    records = read_records(path)
    assert [r.caption for r in records] == ["red\u2028square", None] and records[1].where.endswith(":2")


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="no records"):
        read_records(write_data(tmp_path, ["", "  "]))
    with pytest.raises(InputError, match="not found"):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="is a directory, not a JSON Lines file"):
        read_records(tmp_path)
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        read_records(tmp_path / "bin.jsonl")


def test_records_kinds_and_paths(tmp_path):
    records = read_records(small_records(tmp_path))
    assert [r.kind for r in records] == ["t2i"] * 3 + ["mmu"] * 2 + ["lm"]
    assert records[0].image == (tmp_path / "im0.png").resolve() and records[-1].line == 7
    assert default_config(records).mix.t2i == 4 and default_config(records[:3]).mix.mmu == 0


def fails(capsys, *argv: str, match: str) -> None:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("showo: error:")]
    assert len(lines) == 1 and match.lower() in lines[0].lower(), err


def test_cli_errors_write_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    bad = write_data(tmp_path / "a", [{"image": "im0.png", "caption": "x"}, {"image": "im0.png", "kaption": "x"}])
    fails(capsys, "finetune", str(bad), "--run", str(run), *TINY, match="data.jsonl:2:")
    unreadable = write_data(tmp_path / "b", [{"image": "im0.png", "caption": "x"},
                                             {"image": "fake.png", "caption": "y"}])
    (tmp_path / "b" / "fake.png").write_text("not an image")
    (tmp_path / "b" / "t.jsonl").write_text(json.dumps({"image": "im1.png", "caption": "y"}) + "\n")
    fails(capsys, "finetune", str(unreadable), "--run", str(run), *TINY, match="data.jsonl:2: cannot read image")
    truncated = tmp_path / "b" / "im1.png"
    truncated.write_bytes(truncated.read_bytes()[:-30])  # the header reads; the pixels do not
    fails(capsys, "finetune", str(unreadable.with_name("t.jsonl")), "--run", str(run), *TINY, match="t.jsonl:1: image")
    fails(capsys, "finetune", str(unreadable.with_name("t.jsonl")), "--run", str(run), *TINY, match="truncated")
    long_answer = write_data(tmp_path / "c", [{"image": "im0.png", "question": "Hue?", "answer": "x" * 40}])
    fails(capsys, "finetune", str(long_answer), "--run", str(run), *TINY, match=".jsonl:1: question and answer take")
    for record, field in (({"image": "im0.png", "caption": "a <|soi|> cat"}, "caption"), ({"text": "[PAD] x"}, "text"),
                          ({"image": "im0.png", "question": "<|mmu|>?", "answer": "x"}, "question"),
                          ({"image": "im0.png", "question": "Hue?", "answer": "<|eoi|>"}, "answer")):
        markup = write_data(tmp_path / f"m-{field}", [record])  # learnt as words, refused at inference
        fails(capsys, "finetune", str(markup), "--run", str(run), *TINY,
              match=f".jsonl:1: '{field}' contains ")
    data = small_records(tmp_path / "d")
    recipe = tmp_path / "r.yaml"
    TrainConfig(mix=MixConfig(t2i=0, mmu=0, lm=0, story=2)).to_yaml(recipe)
    fails(capsys, "finetune", str(data), "--run", str(run), "--recipe", str(recipe), *TINY, match="mix.story")
    only_text = write_data(tmp_path / "e", [{"text": "words"}])
    TrainConfig(mix=MixConfig(t2i=1, mmu=0, lm=1)).to_yaml(recipe)
    fails(capsys, "finetune", str(only_text), "--run", str(run), "--recipe", str(recipe), *TINY, match="mix.t2i")
    fails(capsys, "finetune", str(data), "--run", str(run), "--lr", "0", *TINY, match="--lr")
    fails(capsys, "finetune", str(data), "--run", str(run), "--dtype", "bfloat16", *TINY, match="float32")
    (tmp_path / "file").write_text("")
    fails(capsys, "finetune", str(data), "--run", str(tmp_path / "file" / "run"), *TINY, match="--run")
    assert not run.exists()


def test_batches_depend_on_step_only_and_cover_each_epoch(tmp_path, monkeypatch):
    pipe = tiny_random_pipeline()
    records = read_records(small_records(tmp_path))
    mix = MixConfig(t2i=2, mmu=3, lm=1)
    make = lambda: RecordBatchSource(records, pipe.tokenizer, pipe.vq, mix, 32, 16, seed=5)  # noqa: E731
    loaded = []
    monkeypatch.setattr(records_source, "load_image", lambda r, res: loaded.append(r.image) or load_image(r, res))
    a, b = make(), make()
    assert len(loaded) == 2 * 3  # three image files, five records naming them: each file encoded once a source
    for step in (3, 0, 7):
        whole = a.parts(step, 0, 1)
        for p, q in zip(whole, b.parts(step, 0, 1)):
            assert torch.equal(p.ids, q.ids) and torch.equal(p.mask, q.mask)
        assert [p.name for p in whole] == ["t2i", "lm", "mmu"]
        halves = [b.parts(step, r, 2) for r in (0, 1)]  # rank 1 has no lm row (one a step)
        for p in whole:
            assert torch.equal(torch.cat([x.ids for h in halves for x in h if x.name == p.name]), p.ids)
    # a validation set: each record once, the same rows at every call
    val = a.every_record(rows_per_part=2)
    assert [(p.name, p.ids.shape[0]) for p in val] == [("t2i", 2), ("t2i", 1), ("mmu", 2), ("lm", 1)]
    assert all(torch.equal(p.ids, q.ids) for p, q in zip(val, make().every_record(rows_per_part=2)))
    # three text-to-image records: every epoch of three draws reads each once, in a newly shuffled order
    epochs = [[a._draw("t2i", 3 * e + i).line for i in range(3)] for e in range(10)]
    assert all(sorted(e) == [1, 2, 3] for e in epochs) and len({tuple(e) for e in epochs}) > 1


def state(pipe) -> dict:
    return {k: v.clone() for k, v in pipe.model.state_dict().items()}


def test_resume_is_exact_and_refuses_other_data(tmp_path, monkeypatch):
    data = small_records(tmp_path / "data")
    straight, config = tiny_random_pipeline(), tiny_config(4)
    finetune(straight, data, tmp_path / "a", config, progress=False)
    assert config == tiny_config(4)  # the caller's config is not rewritten with the run's layout
    elsewhere = dataclasses.replace(config, output_dir=str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="is not used: this run keeps its checkpoints in"):  # was silently ignored
        finetune(tiny_random_pipeline(), data, tmp_path / "c", elsewhere, progress=False)
    assert not (tmp_path / "c").exists() and not (tmp_path / "elsewhere").exists()
    with monkeypatch.context() as m:
        interrupt_after_saving(m, step=2)
        with pytest.raises(KeyboardInterrupt):
            finetune(tiny_random_pipeline(), data, tmp_path / "b", tiny_config(4), progress=False)
    assert not (tmp_path / "b" / "model").exists()
    resumed = tiny_random_pipeline()
    with torch.no_grad():  # the weights must come from the checkpoint (the image tokenizer stays: it is frozen)
        for p in resumed.model.parameters():
            p.zero_()
    out = finetune(resumed, data, tmp_path / "b", tiny_config(4), progress=False)
    want, got = state(straight), state(resumed)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert not all(torch.equal(want[k], v) for k, v in state(tiny_random_pipeline()).items())  # it trained
    again = ShowoPipeline.from_pretrained(out)
    assert all(torch.equal(want[k], v) for k, v in again.model.state_dict().items())
    with pytest.raises(ConfigError, match="another base model"):
        finetune(tiny_random_pipeline(), data, tmp_path / "a", tiny_config(6), base_model="other", progress=False)
    other = tiny_random_pipeline()
    other.vq = tiny_random_pipeline(seed=1).vq  # another --vq under the same model trained on other codes
    with pytest.raises(ConfigError, match="another image or text tokenizer"):
        finetune(other, data, tmp_path / "a", tiny_config(6), progress=False)
    (tmp_path / "a" / "finetune.json").write_text("[]")  # an AttributeError
    with pytest.raises(ConfigError, match="finetune.json is unreadable"):
        finetune(tiny_random_pipeline(), data, tmp_path / "a", tiny_config(6), progress=False)
    Image.new("RGB", (24, 20), (1, 2, 3)).save(tmp_path / "data" / "im1.png")  # an image changed under the run
    with pytest.raises(ConfigError, match="another data"):
        finetune(tiny_random_pipeline(), data, tmp_path / "b", tiny_config(6), progress=False)


def test_the_same_data_copied_elsewhere_resumes(tmp_path):
    from showo.data.records import data_digest, read_records

    data = small_records(tmp_path / "data")
    copy = Path(shutil.copytree(tmp_path / "data", tmp_path / "elsewhere")) / data.name
    assert data_digest(data, read_records(data)) == data_digest(copy, read_records(copy))
    Image.new("RGB", (24, 20), (1, 2, 3)).save(tmp_path / "elsewhere" / "im1.png")
    assert data_digest(data, read_records(data)) != data_digest(copy, read_records(copy))


def test_a_partial_recipe_keeps_the_finetune_defaults(tmp_path, capsys):
    data = write_data(tmp_path / "d", [{"image": "im0.png", "caption": "a red square"}])  # text-to-image only
    recipe = tmp_path / "r.yaml"
    recipe.write_text("max_steps: 3\noptim:\n  lr: 2.0e-4\n")
    assert main(["finetune", str(data), "--run", str(tmp_path / "run"), "--recipe", str(recipe),
                 "--write-recipe", str(tmp_path / "w.yaml")]) == 0
    written = TrainConfig.from_yaml(tmp_path / "w.yaml")
    default = default_config(read_records(data))
    assert written.max_steps == 3 and written.optim.lr == 2.0e-4
    assert written.mix == default.mix and written.optim.warmup_steps == 0  # a tenth of the steps, rounded down
    for extra, warmup in ((["--max-steps", "40"], 4), (["--max-steps", "40", "--recipe", str(recipe)], 4)):
        assert main(["finetune", str(data), "--run", str(tmp_path / "run"), *extra,
                     "--write-recipe", str(tmp_path / "w.yaml")]) == 0  # (a fixed 20 left 5-step runs at lr/5)
        assert TrainConfig.from_yaml(tmp_path / "w.yaml").optim.warmup_steps == warmup
    recipe.write_text("optim:\n  warmup_steps: 7\n")  # named: kept
    assert main(["finetune", str(data), "--run", str(tmp_path / "run"), "--max-steps", "40", "--recipe", str(recipe),
                 "--write-recipe", str(tmp_path / "w.yaml")]) == 0
    assert TrainConfig.from_yaml(tmp_path / "w.yaml").optim.warmup_steps == 7
    recipe.write_text("max_steps: 3\noptim:\n  lr: 2.0e-4\n")
    assert written.precision == default.precision
    recipe.write_text("mix: {}\noptim: {}\n")  # an empty section reset it to the class defaults (lr 1e-3)
    assert main(["finetune", str(data), "--run", str(tmp_path / "run"), "--recipe", str(recipe),
                 "--write-recipe", str(tmp_path / "w.yaml")]) == 0
    written = TrainConfig.from_yaml(tmp_path / "w.yaml")
    assert written.optim == default.optim and written.mix == default.mix
    recipe.write_text("{1: 2}\n")  # a key that is not text was a raw TypeError
    assert main(["finetune", str(data), "--run", str(tmp_path / "run"), "--recipe", str(recipe),
                 "--write-recipe", str(tmp_path / "w.yaml")]) == 2
    assert "unknown train config keys: 1" in capsys.readouterr().err
    before = data.read_bytes()
    assert main(["finetune", str(data), "--run", str(tmp_path / "run"), "--write-recipe", str(data)]) == 2
    assert "that is the DATA file this command reads" in capsys.readouterr().err and data.read_bytes() == before


def test_cli_says_how_to_resume_and_where_it_resumed(tmp_path, capsys, monkeypatch):
    data, run = small_records(tmp_path / "data"), tmp_path / "run"
    (tmp_path / "r.yaml").write_text("max_steps: 3\nsave_every: 1\n")
    argv = ["finetune", str(data), "--run", str(run), "--recipe", str(tmp_path / "r.yaml"), *TINY]
    with monkeypatch.context() as m:
        interrupt_after_saving(m, step=2)
        assert main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == \
        "showo: error: interrupted; rerun the same command to resume (from the run directory's last checkpoint, if " \
        "it has one)"
    assert main(argv) == 0
    assert f"showo: train: resuming at step 2 of 3 from {run / 'showo-train'}" in capsys.readouterr().err


def test_a_resumed_run_keeps_its_warmup_under_another_max_steps(tmp_path, capsys, monkeypatch):
    """The default warmup is a tenth of the steps of the run as it started: a resume with a later --max-steps
    continues the schedule (deriving it again from the new --max-steps refused the resume as another recipe)."""
    data, run = small_records(tmp_path / "data"), tmp_path / "run"
    argv = ["finetune", str(data), "--run", str(run), *TINY]
    assert main([*argv, "--max-steps", "10"]) == 0
    assert main([*argv, "--max-steps", "20"]) == 0, capsys.readouterr().err
    assert TrainConfig.from_yaml(run / "showo-train" / "config.yaml").optim.warmup_steps == 1
    assert main([*argv, "--max-steps", "30", "--write-recipe", str(tmp_path / "w.yaml")]) == 0
    assert TrainConfig.from_yaml(tmp_path / "w.yaml").optim.warmup_steps == 1


def test_cli_finetunes_and_writes_a_pipeline(tmp_path, capsys):
    data, run = small_records(tmp_path / "data"), tmp_path / "run"
    assert main(["finetune", str(data), "--run", str(run), "--write-recipe", str(tmp_path / "r.yaml"), *TINY]) == 0
    written = TrainConfig.from_yaml(tmp_path / "r.yaml")
    assert (written.mix.t2i, written.mix.mmu, written.mix.lm, written.max_steps) == (4, 4, 1, 200)
    assert not run.exists()
    code = main(["finetune", str(data), "--run", str(run), "--max-steps", "3", "--seed", "2", "--val", str(data),
                 *TINY])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--model " + str(run / "model") in err
    assert "it/s" not in err and "finetune" not in err.split("showo:")[0]  # no progress bar: stderr is not a tty
    assert "showo: train: step 3/3 loss " in err and "tokens/s" in err  # but a line per log step, for batch jobs
    logged = [json.loads(x) for x in (run / "showo-train" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == 3 and {"loss_t2i", "loss_mmu", "loss_lm"} <= set(logged[-1])
    assert {"val_loss_t2i", "val_loss_mmu", "val_loss_lm"} <= set(logged[-1])
    assert json.loads((run / "finetune.json").read_text())["base_model"] == "tiny-random"
    assert main(["caption", str(tmp_path / "data" / "im0.png"), "--model", str(run / "model"), "--device", "cpu",
                 "--max-new-tokens", "3", "--out", str(tmp_path / "out"), "-q"]) == 0


def test_embedded_model_learns_what_it_is_shown(tmp_path):
    """A made-up word as a prompt and a question the world never asks: 60 steps teach the embedded model to draw
    the image shown for the word (nearly every code) and to give the answer (before: other codes, another answer).
    Measured on the edge move: after 30 steps the answer was still 'Sunnnn...' (z14 stage 2 had it at 30), after
    40 right, after 60 with an answer loss of 0.007; on its second stage the same ('Snnnn...' at 30, right at 40,
    answer loss 0.009 at 60)."""
    from PIL import ImageDraw

    from showo.embedded import load_embedded

    picture = Image.new("RGB", (64, 64), (250, 120, 20))
    ImageDraw.Draw(picture).ellipse((8, 8, 40, 40), fill=(20, 20, 200))
    picture.save(tmp_path / "zork.png")
    question, answer = "What is the name of this picture?", "Sunny garden."
    data = write_data(tmp_path, [{"image": "zork.png", "caption": "zork"},
                                 {"image": "im1.png", "question": question, "answer": answer}], images=2)
    pipe = load_embedded()
    image, target = Image.open(tmp_path / "im1.png"), pipe.encode_images([picture])[0]

    def same() -> float:  # the share of generated codes equal to the picture's
        return float((pipe.text_to_image("zork", num_images_per_prompt=2, seed=0).codes == target).float().mean())

    assert pipe.ask(image, question).texts[0] != answer and same() < 0.2
    config = TrainConfig(max_steps=60, precision="auto", log_every=5, save_every=60,
                         mix=MixConfig(t2i=2, lm=0, mmu=2), optim=OptimConfig(lr=1e-3, warmup_steps=2))
    finetune(pipe, data, tmp_path / "run", config, val_records=read_records(data), progress=False)
    logged = [json.loads(x) for x in (tmp_path / "run" / "showo-train" / "metrics.jsonl").read_text().splitlines()]
    assert all(logged[-1][k] < logged[0][k] / 4 for k in ("loss_t2i", "loss_mmu", "val_loss_t2i", "val_loss_mmu"))
    assert pipe.ask(image, question).texts[0] == answer
    assert same() > 0.9  # measured: 128 of the 128 codes (two images)


def test_documented_torchrun_lines_reach_showo():
    """torchrun's own parser takes any prefix of its options (`--run` would be its `--run-path`): every torchrun
    example in the help texts must parse there, then hand showo arguments that showo's parser accepts."""
    from torch.distributed.run import get_args_parser

    from showo.cli import finetune as finetune_cli, train as train_cli
    from showo.cli.parser import build_parser

    lines = [line.split("#")[0].split() for text in (train_cli.EPILOG, finetune_cli.EPILOG)
             for line in text.splitlines() if line.strip().startswith("torchrun")]
    assert len(lines) == 2
    for words in lines:
        launch = get_args_parser().parse_args(words[1:])
        assert launch.training_script == "showo.cli.main"
        args = build_parser().parse_args(launch.training_script_args)
        assert args.run.startswith("runs/")


@pytest.mark.golden
def test_official_layout_pipeline_finetunes_and_reloads(golden, golden_tokenizer, tmp_path):
    """The official path: a checkpoint under the official key names, the official MAGVIT-v2 layout and a Phi-style
    BPE tokenizer (the golden set's tiny ones). Fine-tuned, saved as RUN/model and loaded back unchanged."""
    from golden_models import showo_model

    from showo.checkpoints import load_checked
    from showo.tokenizers.magvit import MagvitConfig, MagvitV2

    m = golden.meta["magvit"]
    vq = MagvitV2(MagvitConfig.from_official_kwargs(m["encoder_kwargs"], m["decoder_kwargs"], m["quantizer_kwargs"]))
    load_checked(vq, golden.weights("magvit_weights.safetensors"), what="golden MAGVIT weights")
    pipe = ShowoPipeline(showo_model(golden), vq.eval(), golden_tokenizer, model_id="golden")
    before = state(pipe)
    data = small_records(tmp_path / "data")
    out = finetune(pipe, data, tmp_path / "run", tiny_config(2), progress=False)
    trained = state(pipe)
    assert not all(torch.equal(before[k], v) for k, v in trained.items())
    again = ShowoPipeline.from_pretrained(out)
    assert all(torch.equal(trained[k], v) for k, v in again.model.state_dict().items())
    assert again.tokenizer.encode("a red cross, left") == golden_tokenizer.encode("a red cross, left")
    image = Image.open(tmp_path / "data" / "im0.png")
    assert torch.equal(again.encode_images([image]), pipe.encode_images([image]))


def test_mean_losses_are_the_losses_a_training_step_reports(tmp_path):
    """`mean_losses` (validation) computes what the trainer logs for the same rows, before its update."""
    from showo.training.trainer import mean_losses

    pipe = tiny_random_pipeline()
    data = small_records(tmp_path)
    source = RecordBatchSource(read_records(data), pipe.tokenizer, pipe.vq, MixConfig(t2i=2, mmu=2, lm=1), 32, 16)
    measured = mean_losses(pipe.model, source.parts(0, 0, 1))
    config = tiny_config(1)
    config.output_dir = str(tmp_path / "run")
    logged = Trainer(pipe.model, source, config).train_step()
    assert set(measured) == {"t2i", "mmu", "lm"}
    for k, v in measured.items():
        assert v == pytest.approx(logged[f"loss_{k}"], rel=1e-5), k


def test_record_images_over_the_pixel_limit_are_refused_quietly(tmp_path):
    """Between the project's 64M pixels and Pillow's own 89.5M, Pillow only warns (two raw lines): a record's image
    is held to the project's limit, as an inference input is."""
    import warnings

    from test_cli_bad_input import png_header

    data = write_data(tmp_path, [{"image": "big.png", "caption": "x"}])
    (tmp_path / "big.png").write_bytes(png_header(9000, 8000))  # 72M pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="data.jsonl:1: cannot read image .*big.png"):
            read_records(data)


@pytest.mark.parametrize("code_bit_rows", [False, True])
def test_a_failed_finetune_gives_the_model_back_its_weights(tmp_path, monkeypatch, code_bit_rows):
    """A divergence (or any failure) mid-run left the pipeline with the weights training had reached, so the next
    call (a generation, or a second try at a lower rate) started from damaged weights."""
    from showo.errors import TrainingDiverged

    pipe = tiny_random_pipeline(seed=0)
    start = {k: v.clone() for k, v in pipe.model.state_dict().items()}
    real_step = Trainer.train_step

    def diverge_at_third(self):
        if self.step == 2:
            with torch.no_grad():
                for p in self.showo.parameters():
                    p.mul_(1e30)
            raise TrainingDiverged(self.step + 1, float("nan"), float("inf"))
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", diverge_at_third)
    config = dataclasses.replace(tiny_config(4), code_bit_rows=code_bit_rows)
    with pytest.raises(TrainingDiverged):
        finetune(pipe, small_records(tmp_path / "data"), tmp_path / "run", config, progress=False)
    after = pipe.model.state_dict()
    assert after.keys() == start.keys() and all(torch.equal(after[k], v) for k, v in start.items())
    assert not pipe.model.training
    pipe.text_to_image("green", num_inference_steps=2)  # usable again


def test_finetune_arguments_are_checked_before_anything_is_written(tmp_path):
    pipe = tiny_random_pipeline(seed=0)
    data = small_records(tmp_path / "data")
    for kwargs, match in (({"pipe": "tiny-random"}, "pipe must be a ShowoPipeline, got str"),
                          ({"config": {"max_steps": 2}}, "config must be a TrainConfig or None, got dict"),
                          ({"run": ""}, "run must be a non-empty path"), ({"data": 3}, "data must be a path, got int"),
                          ({"val_records": "v.jsonl"}, "val_records must be a list of Records"),
                          ({"on_ready": 3}, "on_ready must be callable"),
                          ({"base_model": object()}, "base_model must be a string or None, got object")):
        args = {"pipe": pipe, "data": data, "run": tmp_path / "run", **kwargs}
        with pytest.raises(ConfigError, match=match):
            finetune(args.pop("pipe"), args.pop("data"), args.pop("run"), progress=False, **args)
    with pytest.raises(ConfigError, match="validation records are not scored under distributed: fsdp"):  # hung
        finetune(pipe, data, tmp_path / "run", dataclasses.replace(tiny_config(2), distributed="fsdp"),
                 val_records=read_records(data), progress=False)
    with pytest.raises(ConfigError, match="keeps float32 master weights, and this pipeline's model is torch.bfloat16"):
        finetune(tiny_random_pipeline(seed=0).to(dtype=torch.bfloat16), data, tmp_path / "run", progress=False)
    pipe.pack_weights()
    with pytest.raises(ConfigError, match="packed weights cannot be trained"):
        finetune(pipe, data, tmp_path / "run", tiny_config(2), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_full_disk_at_the_end_is_one_line(tmp_path, monkeypatch):
    """copytree's shutil.Error (a full disk while writing RUN/model) was a raw traceback."""
    from showo.errors import OutputError
    from showo.training import finetune as module

    def no_space(src, dst, **kw):
        raise shutil.Error([(str(src), str(dst), "[Errno 28] No space left on device")])

    monkeypatch.setattr(module.shutil, "copytree", no_space)
    with pytest.raises(OutputError, match=r"cannot write .*model: \[Errno 28\] No space left on device; the run's"):
        finetune(tiny_random_pipeline(), small_records(tmp_path / "data"), tmp_path / "run", tiny_config(2),
                 progress=False)
    assert (tmp_path / "run" / "showo-train" / "latest").is_file() and not (tmp_path / "run" / "model").exists()


def test_a_run_stopped_before_its_first_checkpoint_takes_corrected_data(tmp_path, monkeypatch):
    """Nothing was trained, yet the rerun on corrected data was refused as "another data"."""
    data = small_records(tmp_path / "data")
    with monkeypatch.context() as m:
        m.setattr(Trainer, "train", lambda self, progress=True: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            finetune(tiny_random_pipeline(), data, tmp_path / "run", tiny_config(2), progress=False)
    assert (tmp_path / "run" / "finetune.json").is_file()
    data.write_text(data.read_text().replace('"green"', '"lime"'))
    finetune(tiny_random_pipeline(), data, tmp_path / "run", tiny_config(2), progress=False)
    with pytest.raises(ConfigError, match="another data"):  # once it has a checkpoint, other data is refused
        data.write_text(data.read_text().replace('"lime"', '"olive"'))
        finetune(tiny_random_pipeline(), data, tmp_path / "run", tiny_config(4), progress=False)
