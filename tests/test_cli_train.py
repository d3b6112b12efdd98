"""`showo train` at toy scale: every stage runs from the CLI, resumes, and leaves loadable models."""
import json

import yaml

from showo.cli.main import main
from showo.model import Showo
from showo.training.embedded import EmbeddedRecipe
from showo.tokenizers.magvit import MagvitConfig


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
    assert main(["train", "all", "--run", str(run), "--recipe", str(recipe), "-q"]) == 0
    assert (run / "tokenizer" / "tokenizer.json").is_file() and (run / "magvit" / "config.json").is_file()
    steps = [json.loads(line)["step"] for line in (run / "showo-train" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert main(["train", "model", "--run", str(run), "--recipe", str(recipe), "--max-steps", "5", "-q"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "showo-train" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]  # resumed at 3, not restarted
    latest = (run / "showo-train" / "latest").read_text().strip()
    model = Showo.from_pretrained(run / "showo-train" / latest / "model")
    assert model.config.num_vq_tokens == 64


def test_bad_recipe_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"hidden_size": 32, "no_such_key": 1}))
    assert main(["train", "all", "--run", str(tmp_path / "r"), "--recipe", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["showo: error: unknown recipe keys: no_such_key"]


def test_write_recipe_round_trips(tmp_path):
    out = tmp_path / "r.yaml"
    assert main(["train", "all", "--run", str(tmp_path / "r"), "--write-recipe", str(out)]) == 0
    assert EmbeddedRecipe.from_yaml(out).to_dict() == EmbeddedRecipe().to_dict()
