"""`showo train` at toy scale: every stage runs from the CLI, resumes, and leaves loadable models."""
import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from showo.cli.main import main
from showo.model import Showo
from showo.pipelines import ShowoPipeline
from showo.training.config import read_yaml
from showo.training.embedded import EmbeddedRecipe
from showo.tokenizers.magvit import MagvitConfig

RECIPES = Path(__file__).parents[1] / "docs" / "recipes"


def tiny_recipe(path):
    r = EmbeddedRecipe(text_vocab_size=300, text_corpus_samples=30, hidden_size=32, num_layers=1, num_heads=2,
                       magvit=MagvitConfig(encoder_ch=32, encoder_ch_mult=(1, 1, 1, 1),
                                           encoder_num_res_blocks=(1, 1, 1, 1), decoder_ch=32,
                                           decoder_ch_mult=(1, 1, 1, 1), decoder_num_res_blocks=(1, 1, 1, 1),
                                           z_channels=6, resolution=64))
    r.tokenizer_train.max_steps, r.tokenizer_train.batch_size, r.tokenizer_train.save_every = 2, 2, 2
    r.train.max_steps, r.train.save_every, r.train.log_every = 3, 3, 1
    r.train.mix.t2i, r.train.mix.lm, r.train.mix.mmu, r.train.mix.story = 2, 1, 2, 1
    r.to_yaml(path)
    return r


def test_train_all_then_resume(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    tiny_recipe(recipe)
    run = tmp_path / "run"
    assert main(["train", "all", "--run", str(run), "--recipe", str(recipe)]) == 0
    err = capsys.readouterr().err  # not a terminal: a line per log step instead of a bar
    assert "showo: train: step 2/2 loss " in err and " dB" in err and "showo: train: step 3/3 loss " in err
    assert (run / "tokenizer" / "tokenizer.json").is_file() and (run / "magvit" / "config.json").is_file()
    steps = [json.loads(line)["step"] for line in (run / "showo-train" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    # a run killed after its last checkpoint (step 3) has logged steps 4 and 5 and half of 6: the resumed run
    # takes them again, and the log keeps one line per step
    with open(run / "showo-train" / "metrics.jsonl", "a") as log:
        log.write('{"step": 4, "loss": 1.0}\n{"step": 5, "loss": 1.0}\n{"step": 6, "lo')
    assert main(["train", "model", "--run", str(run), "--recipe", str(recipe), "--max-steps", "5", "-q"]) == 0
    logged = [json.loads(line) for line in (run / "showo-train" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1, 2, 3, 4, 5]  # resumed at 3, not restarted
    assert logged[3]["loss"] != 1.0  # step 4 as the resumed run measured it
    latest = (run / "showo-train" / "latest").read_text().strip()
    model = Showo.from_pretrained(run / "showo-train" / latest / "model")
    assert model.config.num_vq_tokens == 64
    pipe = ShowoPipeline.from_pretrained(run / "model")  # what the run ends with: the last checkpoint, loadable
    assert all(torch.equal(v, pipe.model.state_dict()[k]) for k, v in model.state_dict().items())
    assert f"--model {run / 'model'}" in capsys.readouterr().out
    reseeded = EmbeddedRecipe.from_yaml(recipe)  # other scenes or sequences under the same run: refused
    reseeded.seed, reseeded.max_seq_length = 5, 48
    reseeded.to_yaml(recipe)
    assert main(["train", "model", "--run", str(run), "--recipe", str(recipe), "--max-steps", "6", "-q"]) == 2
    assert "another recipe (max_seq_length 40 -> 48, seed 0 -> 5)" in capsys.readouterr().err


@pytest.mark.parametrize("change, match", [
    (lambda r: r.update(seed=5), "showo-train was started with another recipe (seed 0 -> 5)"),
    (lambda r: r["train"]["optim"].update(lr=1e-3),
     "showo-train was started with another recipe (optim.lr 0.0015 -> 0.001)"),
    (lambda r: r["tokenizer_train"].update(lr=1e-2), "magvit-train was started with another recipe (lr 0.003 -> 0.01)"),
])
def test_train_all_refuses_a_stage_it_cannot_resume_before_running_any(tmp_path, capsys, change, match):
    """`train all` used to run (resume) the tokenizer stages before the model stage refused its checkpoint."""
    recipe = tmp_path / "recipe.yaml"
    tiny_recipe(recipe)
    run = tmp_path / "run"
    assert main(["train", "all", "--run", str(run), "--recipe", str(recipe), "-q"]) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    changed = read_yaml(recipe)
    change(changed)
    recipe.write_text(yaml.safe_dump(changed))
    assert main(["train", "all", "--run", str(run), "--recipe", str(recipe), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing ran, nothing was rewritten


def test_bad_recipe_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"hidden_size": 32, "no_such_key": 1}))
    assert main(["train", "all", "--run", str(tmp_path / "r"), "--recipe", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["showo: error: unknown recipe keys: no_such_key"]


@pytest.mark.parametrize("train, match", [
    ({"max_steps": 1.5}, "max_steps must be an integer, got 1.5"),
    ({"max_steps": True}, "max_steps must be an integer"),
    ({"optim": 5}, "optim must be a mapping"),
    ({"optim": {"betas": [0.9]}}, "optim.betas must be a list of 2 finite numbers"),
    ({"optim": {"betas": [2, 3]}}, "optim.betas must be in [0, 1)"),
    ({"optim": {"lr": float("nan")}}, "optim.lr must be a finite number"),
    ({"optim": {"grad_clip": 0}}, "optim.grad_clip must be > 0 or null"),
    ({"mix": {"mask_schedule": "foo"}}, "unknown mask schedule"),
    ({"mix": {"min_masking_rate": 1.5}}, "mix.min_masking_rate must be in [0, 1]"),
    ({"output_dir": 5}, "output_dir must be text"),
    ({"output_dir": "elsewhere"}, "output_dir 'elsewhere' is not used: this run keeps its checkpoints in"),
])
def test_recipe_values_of_the_wrong_type_or_range(tmp_path, capsys, train, match):
    """Checked when the recipe is read, before anything is written (they were tracebacks, some after training)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": train}))
    assert main(["train", "all", "--run", str(tmp_path / "r"), "--recipe", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("showo: error:") and match in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("recipe, match", [
    ({"tokenizer_train": {"batch_size": 0}}, "tokenizer_train.batch_size must be >= 1"),
    ({"tokenizer_train": {"grad_clip": -1.0}}, "tokenizer_train.grad_clip must be a finite number > 0"),
    ({"tokenizer_train": {"log_every": 0}}, "tokenizer_train.log_every must be >= 1"),
    ({"num_heads": 3}, "hidden_size / num_heads must be a whole multiple of 4"),
    ({"hidden_size": 0}, "hidden_size must be >= 1"),
    ({"max_seq_length": 0}, "max_seq_length must be >= 2"),
    ({"seed": -3}, "seed must be in [0, 2**63), got -3"),
    ({"seed": 2 ** 63}, "seed must be in [0, 2**63), got 9223372036854775808"),
    ({"magvit": {"resolution": 63}}, "resolution must be a positive multiple of the downsampling factor 8"),
    ({"train": {"mix": {"t2i_coeff": -1.0}}}, "mix.t2i_coeff must be a finite number >= 0"),
    ({"train": {"optim": {"lr": "1e-4"}}}, "write it with a dot"),
    ({"tokenizer_train": {"output_dir": "x"}}, "output_dir 'x' is not used: this run keeps its checkpoints in"),
    ({"seed": 4, "train": {"seed": 3}}, "train.seed 3 is not used by a recipe: set the top-level seed (now 4)"),
])
def test_every_stage_s_values_are_checked_before_the_first_stage(tmp_path, capsys, recipe, match):
    """`train all` used to run the tokenizer stages before finding a bad model or Show-o value (or accepted it)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(recipe))
    assert main(["train", "all", "--run", str(tmp_path / "r"), "--recipe", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("showo: error:") and match in err[0], err
    assert not (tmp_path / "r").exists()


def test_model_stage_without_a_tokenizer_makes_no_run_directory(tmp_path, capsys):
    assert main(["train", "model", "--run", str(tmp_path / "r")]) == 2
    assert "run the image-tokenizer stage first" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_recipe_that_is_not_utf8_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"seed: \xff\xfe\n")
    assert main(["train", "all", "--run", str(tmp_path / "r"), "--recipe", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("showo: error: cannot read")


def test_recipe_key_given_twice_is_one_line(tmp_path, capsys):
    """PyYAML keeps the last of two equal keys; an override appended to a recipe must not win silently.
    Merge keys (`<<: *base`) may still be overridden, as YAML says."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 3\ntrain:\n  max_steps: 10\n  optim: {lr: 0.1}\n  max_steps: 0\n")  # 0 fails fast if read
    assert main(["train", "all", "--run", str(tmp_path / "r"), "--recipe", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"showo: error: cannot read {bad}: key 'max_steps' is given twice (line 5)"
    good = tmp_path / "good.yaml"
    good.write_text("x: &mix {t2i: 2, lm: 1}\ny: {<<: *mix, lm: 3}\n")
    assert read_yaml(good) == {"x": {"t2i": 2, "lm": 1}, "y": {"t2i": 2, "lm": 3}}


def test_write_recipe_round_trips(tmp_path):
    out = tmp_path / "r.yaml"
    assert main(["train", "all", "--run", str(tmp_path / "r"), "--write-recipe", str(out)]) == 0
    assert EmbeddedRecipe.from_yaml(out).to_dict() == EmbeddedRecipe().to_dict()


def trained_tiny_run(tmp_path):
    """(recipe path, recipe, the run's latest model directory) of a tiny run trained end to end in tmp_path/first."""
    recipe = tmp_path / "recipe.yaml"
    r = tiny_recipe(recipe)
    first = tmp_path / "first"
    assert main(["train", "all", "--run", str(first), "--recipe", str(recipe), "-q"]) == 0
    return recipe, r, first / "showo-train" / (first / "showo-train" / "latest").read_text().strip() / "model"


# (the second case also starts from the finished run's RUN/model, a saved pipeline, not a Show-o directory)
@pytest.mark.parametrize("code_bit_rows, from_pipeline", [(False, False), (True, True)])
def test_init_from_continues_from_saved_weights_on_fresh_data(tmp_path, code_bit_rows, from_pipeline):
    recipe, r, start = trained_tiny_run(tmp_path)
    r.train.code_bit_rows = code_bit_rows
    first = tmp_path / "first"
    second = tmp_path / "second"
    second.mkdir()
    for part in ("tokenizer", "magvit"):
        (second / part).symlink_to((first / part).resolve())
    r.seed, r.train.max_steps, r.train.optim.lr = 1, 1, 1e-9  # one step this small leaves the start weights
    r.to_yaml(recipe)
    init = tmp_path / "first" / "model" if from_pipeline else start
    assert main(["train", "model", "--run", str(second), "--recipe", str(recipe), "--init-from", str(init),
                 "-q"]) == 0
    before, after = Showo.from_pretrained(start).state_dict(), Showo.from_pretrained(
        second / "showo-train" / "checkpoint-0000001" / "model").state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    first_loss = json.loads((first / "showo-train" / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    second_loss = json.loads((second / "showo-train" / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert first_loss != second_loss  # other weights and (seed 1) other scenes


def test_init_from_a_model_with_another_codebook_keeps_its_text_rows(tmp_path):
    """Moving Show-o onto a new image tokenizer: everything but the image-code rows starts from the saved model."""
    recipe, r, start = trained_tiny_run(tmp_path)
    r.seed, r.train.max_steps, r.train.optim.lr, r.magvit.z_channels = 1, 1, 1e-9, 5
    r.to_yaml(recipe)
    second = tmp_path / "second"
    assert main(["train", "all", "--run", str(second), "--recipe", str(recipe), "--init-from", str(start),
                 "-q"]) == 0
    old = Showo.from_pretrained(start)
    new = Showo.from_pretrained(second / "showo-train" / "checkpoint-0000001" / "model")
    assert (old.config.codebook_size, new.config.codebook_size) == (64, 32)
    kept = old.config.image_token_offset
    before, after = old.state_dict(), new.state_dict()
    for name in before:
        if before[name].shape == after[name].shape:
            assert torch.allclose(before[name], after[name], atol=1e-6), name
        else:  # the embedding and LM head: text, special and mask rows copied, image rows new
            assert torch.allclose(before[name][:kept], after[name][:kept], atol=1e-6), name
            assert torch.allclose(before[name][-1], after[name][-1], atol=1e-6), name
            fresh = after[name][kept:-1]
            assert (fresh == 0).all() if name.endswith("bias") else fresh.std() > 0.01, name  # build_model's init
    assert sum(before[n].shape != after[n].shape for n in before) == 3


@pytest.mark.parametrize("fresh", [False, True])
def test_init_from_with_fresh_image_codes_on_a_same_size_codebook(tmp_path, fresh):
    """A tokenizer retrained from scratch has as many codes, but they mean something else: with
    init_fresh_image_codes the image-code rows keep the new model's init, everything else is copied."""
    from showo.tiny import tiny_random_pipeline
    from showo.training.embedded import init_weights

    saved, model = tiny_random_pipeline(seed=0).model, tiny_random_pipeline(seed=1).model
    saved.save_pretrained(tmp_path / "saved")
    own = {k: v.clone() for k, v in model.state_dict().items()}
    init_weights(model, tmp_path / "saved", fresh_image_codes=fresh)
    kept = model.config.image_token_offset
    for name, value in model.state_dict().items():
        want = saved.state_dict()[name]
        if fresh and value.shape[:1] == (model.config.vocab_size,):  # the embedding and LM head
            assert torch.equal(value[:kept], want[:kept]) and torch.equal(value[-1], want[-1]), name
            assert torch.equal(value[kept:-1], own[name][kept:-1]), name
        else:
            assert torch.equal(value, want), name


def test_init_from_another_text_vocabulary_is_a_config_error():
    from showo.errors import ConfigError
    from showo.training.embedded import with_fresh_image_rows
    from showo.tiny import tiny_random_pipeline

    model = tiny_random_pipeline().model
    other = replace(model.config, llm_vocab_size=model.config.llm_vocab_size + 1,
                    vocab_size=model.config.vocab_size + 1)
    with pytest.raises(ConfigError, match="only the image codebook may change"):
        with_fresh_image_rows(model.state_dict(), other, model)


def test_init_from_takes_a_part_directory_or_a_saved_pipeline(tmp_path):
    from showo.errors import ConfigError
    from showo.training.embedded import require_model_dir
    from showo.training.tokenizer import require_tokenizer_dir

    for part in ("showo", "magvit"):
        (tmp_path / "pipeline" / part).mkdir(parents=True)
        (tmp_path / "pipeline" / part / "config.json").write_text("{}")
    assert require_model_dir(tmp_path / "pipeline") == tmp_path / "pipeline" / "showo"
    assert require_model_dir(tmp_path / "pipeline" / "showo") == tmp_path / "pipeline" / "showo"
    assert require_tokenizer_dir(tmp_path / "pipeline") == tmp_path / "pipeline" / "magvit"
    (tmp_path / "pipeline" / "magvit" / "config.json").unlink()
    with pytest.raises(ConfigError, match="no image tokenizer in .*pipeline \\(nor in its magvit/\\)"):
        require_tokenizer_dir(tmp_path / "pipeline")


def test_init_from_a_missing_model_is_one_line_error(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    tiny_recipe(recipe)
    run = tmp_path / "run"
    assert main(["train", "all", "--run", str(run), "--recipe", str(recipe), "--max-steps", "1",
                 "--init-from", str(tmp_path / "nowhere"), "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("showo: error: init_from: no Show-o model")


@pytest.mark.parametrize("stage", ["embedded-stage2.yaml", "embedded-stage3.yaml", "embedded-stage4.yaml",
                                   "embedded-stage5.yaml", "embedded-stage6.yaml", "embedded-stage7.yaml"])
def test_shipped_stage_recipes_continue_the_default_architecture(stage):
    recipe = EmbeddedRecipe.from_yaml(RECIPES / stage)
    default = EmbeddedRecipe()
    assert recipe.init_from and recipe.seed != default.seed
    for key in ("hidden_size", "num_layers", "num_heads", "max_seq_length", "text_vocab_size"):
        assert getattr(recipe, key) == getattr(default, key), key
    assert recipe.magvit.to_dict() == default.magvit.to_dict()


def test_every_stage_reads_scenes_no_earlier_stage_read():
    """Stages from different weights never share a seed; alternatives for one stage (the same init_from) share
    it, so that they train on the same scenes and compare cleanly."""
    seeds = {}
    for path in sorted(RECIPES.glob("embedded-*.yaml")):
        recipe = EmbeddedRecipe.from_yaml(path)
        seeds.setdefault(recipe.init_from, set()).add(recipe.seed)
    assert len(seeds) >= 8 and all(len(s) == 1 for s in seeds.values())
    flat = [s for group in seeds.values() for s in group]
    assert len(set(flat)) == len(flat) and EmbeddedRecipe().seed not in flat


@pytest.mark.parametrize("stage", ["embedded-z14.yaml", "embedded-z14-stage2.yaml",
                                   "embedded-z14-stage2-code-bits.yaml", "embedded-z14-stage3.yaml",
                                   "embedded-z14-stage3-questions.yaml", "embedded-z14-stage3-spatial.yaml",
                                   "embedded-z14-edge.yaml", "embedded-z14-edge-stage2.yaml",
                                   "embedded-z14-edge-stage3.yaml", "embedded-z14-edge-story.yaml"])
def test_z14_recipes_move_the_default_architecture_onto_the_candidate_tokenizer(stage):
    recipe = EmbeddedRecipe.from_yaml(RECIPES / stage)
    tokenizer = EmbeddedRecipe.from_yaml(RECIPES / "tokenizer-z14.yaml")
    assert recipe.magvit.to_dict() == tokenizer.magvit.to_dict() and recipe.init_from
    default = EmbeddedRecipe()
    for key in ("hidden_size", "num_layers", "num_heads", "max_seq_length", "text_vocab_size"):
        assert getattr(recipe, key) == getattr(default, key), key


def test_candidate_tokenizer_recipe_is_the_default_with_more_codes():
    """docs/recipes/tokenizer-z14.yaml (the shipped tokenizer) changes only the default recipe's code bits; it
    records the bf16 that trained it, where the default now says auto (bf16 where native, as it was there)."""
    recipe = EmbeddedRecipe.from_yaml(RECIPES / "tokenizer-z14.yaml")
    default = EmbeddedRecipe()
    assert recipe.magvit.z_channels == 14 and default.magvit.z_channels == 12
    assert recipe.train.precision == recipe.tokenizer_train.precision == "bf16"
    recipe.train.precision = recipe.tokenizer_train.precision = "auto"
    assert replace(recipe, magvit=default.magvit) == default


def test_edge_tokenizer_recipe_is_the_shipped_one_with_the_edge_loss():
    """docs/recipes/tokenizer-z14-edge.yaml (the candidate tokenizer) changes only edge_weight."""
    edge = EmbeddedRecipe.from_yaml(RECIPES / "tokenizer-z14-edge.yaml")
    shipped = EmbeddedRecipe.from_yaml(RECIPES / "tokenizer-z14.yaml")
    assert edge.tokenizer_train.edge_weight == 2.0 and shipped.tokenizer_train.edge_weight == 0.0
    assert replace(edge, tokenizer_train=replace(edge.tokenizer_train, edge_weight=0.0)) == shipped


def test_edge_second_stage_is_z14s_second_stage_on_the_edge_codes():
    """docs/recipes/embedded-z14-edge-stage2.yaml (shipped) repeats z14 stage 2 from the edge move's end, on new
    scenes; embedded-z14-edge-stage3.yaml repeats it from its own end, on newer ones."""
    edge = EmbeddedRecipe.from_yaml(RECIPES / "embedded-z14-edge-stage2.yaml")
    z14 = EmbeddedRecipe.from_yaml(RECIPES / "embedded-z14-stage2-code-bits.yaml")
    assert edge.init_from == "runs/edge/showo-train/checkpoint-0004500/model" and not edge.init_fresh_image_codes
    assert EmbeddedRecipe.from_yaml(RECIPES / "embedded-z14-edge.yaml").train.max_steps == 4500
    assert replace(edge, seed=z14.seed, init_from=z14.init_from) == z14
    third = EmbeddedRecipe.from_yaml(RECIPES / "embedded-z14-edge-stage3.yaml")
    assert third.init_from == f"runs/edge-stage2/showo-train/checkpoint-{edge.train.max_steps:07d}/model"
    assert third.seed == edge.seed + 1 and replace(third, seed=edge.seed, init_from=edge.init_from) == edge


def test_story_trial_is_the_third_stage_with_twice_the_story_rows():
    """docs/recipes/embedded-z14-edge-story.yaml changes only the story rows of its control, the third stage."""
    trial = EmbeddedRecipe.from_yaml(RECIPES / "embedded-z14-edge-story.yaml")
    control = EmbeddedRecipe.from_yaml(RECIPES / "embedded-z14-edge-stage3.yaml")
    assert trial.train.mix.story == 2 * control.train.mix.story == 8
    trial.train.mix.story = control.train.mix.story
    assert trial == control


def test_spatial_trial_is_its_control_with_weighted_questions():
    """docs/recipes/embedded-z14-stage3-spatial.yaml changes only the question-type weights of its control."""
    trial = EmbeddedRecipe.from_yaml(RECIPES / "embedded-z14-stage3-spatial.yaml")
    control = EmbeddedRecipe.from_yaml(RECIPES / "embedded-z14-stage3.yaml")
    assert trial.train.mix.mmu_qtype_weights == {"relation": 3.0, "position": 2.0}
    trial.train.mix.mmu_qtype_weights = {}
    assert trial == control


def test_image_tokenizer_init_from_decoder_only(tmp_path, capsys):
    """A tokenizer trained further from saved weights, decoder alone: the encoder and quantizer come back unchanged."""
    from showo.tokenizers.magvit import MagvitV2

    recipe = tmp_path / "recipe.yaml"
    r = tiny_recipe(recipe)
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "image-tokenizer", "--run", str(first), "--recipe", str(recipe), "-q"]) == 0
    r.tokenizer_train.init_from, r.tokenizer_train.decoder_only = str(first / "magvit"), True
    r.to_yaml(recipe)
    assert main(["train", "image-tokenizer", "--run", str(second), "--recipe", str(recipe), "-q"]) == 0
    old = MagvitV2.from_pretrained(first / "magvit").state_dict()
    new = MagvitV2.from_pretrained(second / "magvit").state_dict()
    assert all(torch.equal(old[k], new[k]) == (not k.startswith("decoder.")) for k in old if old[k].is_floating_point()
               and not k.endswith("num_batches_tracked"))
    capsys.readouterr()
    for change, message in [({"init_from": str(tmp_path / "nowhere")}, "tokenizer_train.init_from: no image tokenizer"),
                            ({"z_channels": 5}, "its architecture differs from the model's (the recipe's magvit")]:
        bad = copy.deepcopy(r)
        bad.tokenizer_train.init_from = change.get("init_from", bad.tokenizer_train.init_from)
        bad.magvit = replace(bad.magvit, z_channels=change.get("z_channels", bad.magvit.z_channels))
        bad.to_yaml(recipe)
        assert main(["train", "image-tokenizer", "--run", str(tmp_path / "third"), "--recipe", str(recipe), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
