"""`showo train`: the stages of the embedded model's recipe (see showo.training.embedded)."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..errors import ConfigError
from .values import path_arg, positive_int

STAGES = ("text-tokenizer", "image-tokenizer", "model", "all")

DESCRIPTION = """\
Train Show-o from scratch on the procedural world, in stages that share one run directory: the text tokenizer
(byte-level BPE on world text), the image tokenizer (MAGVIT-v2 with a lookup-free quantizer) and the Show-o
model (t2i + lm + mmu + interleaved stories). Every stage resumes from the run directory: rerun the same
command after an interruption. The model stage runs under torchrun for data parallel training (DDP, or FSDP2
with train.distributed: fsdp in the recipe). To train on your own images and text, see showo finetune."""

EPILOG = """\
examples:
  showo train all --run runs/embedded
  showo train image-tokenizer --run runs/embedded --max-steps 500
  showo train model --run runs/embedded --recipe my-recipe.yaml
  showo train model --run runs/stage2 --recipe docs/recipes/embedded-stage2.yaml   # continue from saved weights
  showo train model --run runs/ft --init-from runs/embedded/showo-train/checkpoint-0003000/model   # runs/ft holds
                                   # copies of runs/embedded/tokenizer and magvit
  torchrun --standalone --nproc_per_node=2 -m showo.cli.main train model --run-dir runs/embedded
  showo train all --run /tmp/r --write-recipe recipe.yaml   # write the default recipe to edit, then stop"""


def add_parser(sub, parser_class) -> None:
    p = sub.add_parser("train", help="train the image/text tokenizers and Show-o on the procedural world",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=STAGES, help="what to train (all = the three stages in order)")
    p.add_argument("--run", "--run-dir", dest="run", required=True, metavar="DIR", type=path_arg,
                   help="run directory (created; resumed when it exists); under torchrun write --run-dir, which "
                        "torchrun does not mistake for its own --run-path")
    p.add_argument("--recipe", metavar="YAML", type=path_arg, help="recipe file (default: the embedded model's recipe)")
    p.add_argument("--max-steps", type=positive_int, metavar="N", help="override the stage's number of steps")
    p.add_argument("--init-from", metavar="DIR", type=path_arg,
                   help="start the model stage from these Show-o weights: a run's RUN/model, a checkpoint's model/ "
                        "(fresh optimizer and schedule)")
    p.add_argument("--write-recipe", metavar="YAML", type=path_arg, help="write the recipe in effect to YAML and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from ..training import embedded
    from ..training.config import SHOWO_TRAIN_DIR
    from ..training.distributed import is_main_process
    from ..files import write_file
    from .outputs import make_dir
    from .progress import training_progress

    recipe = embedded.EmbeddedRecipe.from_yaml(args.recipe) if args.recipe else embedded.EmbeddedRecipe()
    if args.max_steps is not None:
        recipe.tokenizer_train.max_steps = args.max_steps
        recipe.train.max_steps = args.max_steps
    if args.init_from is not None:
        recipe.init_from = args.init_from
    if args.write_recipe:  # a recipe may name weights that do not exist yet
        write_file(Path(args.write_recipe), recipe.to_yaml_text().encode(), "--write-recipe")
        return 0
    run_dir = Path(args.run)
    _check_before_starting(args.stage, recipe, run_dir)
    make_dir(run_dir, "--run")
    torch.manual_seed(recipe.seed)
    progress = training_progress(args.quiet)
    if args.stage in ("text-tokenizer", "all"):
        tok = embedded.build_text_tokenizer(run_dir, recipe)
        print(f"text tokenizer: {len(tok)} tokens -> {run_dir / 'tokenizer'}")
    if args.stage in ("image-tokenizer", "all"):
        embedded.train_image_tokenizer(run_dir, recipe, progress=progress)
        print(f"image tokenizer -> {run_dir / 'magvit'}")
    if args.stage in ("model", "all"):
        embedded.train_showo(run_dir, recipe, progress=progress)
        if is_main_process():  # under torchrun, once
            print(f"model -> {run_dir / 'model'} (use --model {shlex.quote(str(run_dir / 'model'))}; checkpoints in "
                  f"{run_dir / SHOWO_TRAIN_DIR})")
    return 0


def _check_before_starting(stage: str, recipe, run_dir: Path) -> None:
    """What would fail in a later stage fails now, before the run directory is made or an earlier stage runs."""
    from ..training import embedded
    from ..training.config import SHOWO_TRAIN_DIR, in_run_directory
    from ..training.tokenizer import require_tokenizer_dir
    from ..training.trainer import check_tensorboard
    from .outputs import check_out_dir

    check_out_dir(run_dir, flag="--run")
    if stage in ("image-tokenizer", "all"):
        _check_resumable(in_run_directory(recipe.tokenizer_train, run_dir / "magvit-train"))
        if recipe.tokenizer_train.init_from:
            require_tokenizer_dir(Path(recipe.tokenizer_train.init_from))
    if stage in ("model", "all"):
        train = in_run_directory(recipe.train, run_dir / SHOWO_TRAIN_DIR)
        _check_resumable(train)
        embedded.check_stage_recipe(Path(train.output_dir), recipe, is_main=False)  # compares only
        if recipe.init_from:
            embedded.require_model_dir(Path(recipe.init_from))
        if stage == "model" and not (run_dir / "magvit" / "config.json").is_file():
            raise ConfigError(f"no image tokenizer in {run_dir / 'magvit'}: run the image-tokenizer stage first")
        if recipe.train.tensorboard:
            check_tensorboard()


def _check_resumable(config) -> None:
    """Refuse now a stage's checkpoint saved under another recipe (or precision): both stages train on the CPU."""
    from ..hardware import resolve_precision
    from ..training.checkpoint import check_resumable, run_config

    precision = resolve_precision(config.precision, "cpu", warn=False)
    check_resumable(Path(config.output_dir), run_config(config, precision), config.max_steps)
