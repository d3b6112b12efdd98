"""`showo finetune`: train a model further on your own images, questions and text (showo.training.finetune)."""
from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from ..errors import ConfigError, OutputError
from .values import path_arg

DESCRIPTION = """\
Fine-tune a Show-o (the embedded model by default, or any --model) on your own data: a JSON Lines file with one
record per line, {"image": PATH, "caption": TEXT} for text-to-image, {"image": PATH, "question": TEXT, "answer":
TEXT} for understanding (captioning: a question such as "Describe the image." with the caption as answer), or
{"text": TEXT} for plain text; image paths are relative to the file. Every record and image is checked before
training starts. The image and text tokenizers stay frozen. The run directory is resumed when it exists (rerun
the same command after an interruption) and ends with the fine-tuned pipeline in RUN/model, which every other
command takes as --model RUN/model. Runs under torchrun for data parallel training."""

EPILOG = """\
examples:
  showo finetune data/pets.jsonl --run runs/pets                      # the embedded model, default schedule
  showo finetune data/pets.jsonl --run runs/pets --max-steps 500 --lr 5e-5 --val data/pets-val.jsonl
  showo finetune data/pets.jsonl --run runs/pets --write-recipe ft.yaml   # the schedule, to edit and pass back
  showo finetune data/pets.jsonl --run runs/pets --recipe ft.yaml
  showo ask photo.png "What is it?" --model runs/pets/model
  torchrun --standalone --nproc_per_node=2 -m showo.cli.main finetune data/pets.jsonl --run-dir runs/pets"""


def add_parser(sub, add_model_options) -> None:
    from .values import non_negative_int, positive_float, positive_int

    p = sub.add_parser("finetune", help="train a model further on your own images, questions and text",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA.jsonl", type=path_arg, help="the records (JSON Lines; see above)")
    g = p.add_argument_group("training")
    g.add_argument("--run", "--run-dir", dest="run", required=True, metavar="DIR", type=path_arg,
                   help="run directory (created; resumed when it exists); under torchrun write --run-dir, which "
                        "torchrun does not mistake for its own --run-path")
    g.add_argument("--recipe", metavar="YAML", type=path_arg,
                   help="training config; keys it leaves out keep the default: a 200-step schedule (warmup: a tenth "
                        "of the steps), lr 1e-4, whose mix has rows of each kind the data holds")
    g.add_argument("--val", metavar="VAL.jsonl", type=path_arg,
                   help="records to score at every log step, never trained on (val_loss_<objective> in metrics.jsonl)")
    g.add_argument("--max-steps", type=positive_int, metavar="N",
                   help="override the number of optimizer steps (a warmup the recipe leaves out is a tenth of them)")
    g.add_argument("--lr", type=positive_float, metavar="LR", help="override the peak learning rate")
    g.add_argument("--seed", type=non_negative_int,
                   help="order of the records and masking draws (default: the recipe's, 0)")
    g.add_argument("--write-recipe", metavar="YAML", type=path_arg, help="write the config in effect to YAML and exit")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line on stderr")
    add_model_options(p)


def _config(args, records):
    from ..training.config import TrainConfig, merged, read_yaml
    from ..training.finetune import default_config, default_warmup, started_warmup

    config = default_config(records)
    recipe = read_yaml(args.recipe) if args.recipe else {}
    if recipe:  # a partial recipe changes only what it names
        config = TrainConfig.from_dict(merged(config.to_dict(), recipe))
    if args.max_steps is not None:
        config.max_steps = args.max_steps
    if "warmup_steps" not in (recipe.get("optim") or {}):  # (from_dict has checked that optim is a mapping)
        started = started_warmup(Path(args.run))
        config.optim.warmup_steps = default_warmup(config.max_steps) if started is None else started
    if args.lr is not None:
        config.optim.lr = args.lr
    if args.seed is not None:
        config.seed = args.seed
    return config  # the overrides are validated by their argparse types


def run(ctx) -> int:
    from ..data.records import count_kinds, read_records
    from ..files import write_file
    from ..training.config import SHOWO_TRAIN_DIR
    from ..training.distributed import is_main_process
    from ..training.finetune import finetune
    from ..training.trainer import check_tensorboard
    from .outputs import check_out_dir
    from .progress import say, training_progress

    args = ctx.args
    if ctx.spec.pack_weights or ctx.spec.dtype != "float32":
        raise ConfigError("finetune keeps float32 master weights: drop --dtype/--pack-weights (the recipe's "
                          "precision sets the autocast: bf16, or auto for bf16 where the hardware has it)")
    data, run_dir = Path(args.data), Path(args.run)
    records = read_records(data)
    val_records = read_records(args.val) if args.val else None
    config = _config(args, records)
    if args.write_recipe:
        inputs = [(data, "DATA"), *([(Path(args.val), "--val")] if args.val else []),
                  *([(Path(args.recipe), "--recipe")] if args.recipe else [])]
        for path, flag in inputs:  # it replaced the data file with YAML
            if Path(args.write_recipe).resolve() == path.resolve():
                raise OutputError(f"--write-recipe {args.write_recipe}: that is the {flag} file this command reads")
        write_file(Path(args.write_recipe), config.to_yaml_text().encode(), "--write-recipe")
        return 0
    check_out_dir(run_dir, flag="--run")
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and ctx.spec.device == "cuda":  # under torchrun: one GPU per process
        import torch

        from .models import resolve_device

        ctx.spec.device = resolve_device(f"cuda:{int(local_rank)}")
        torch.cuda.set_device(ctx.spec.device)
    kinds = ", ".join(f"{n} {k}" for k, n in count_kinds(records).items() if n)
    if config.tensorboard:
        check_tensorboard()
    pipe = ctx.load()

    def report(source) -> None:
        cut = {k: n for k, n in source.truncated().items() if n}
        if cut:
            say("note", "longer than the model's text region, cut as the official training cuts them: "
                + ", ".join(f"{n} {k} record(s)" for k, n in cut.items()))

    out = finetune(pipe, data, run_dir, config, records=records, val_records=val_records,
                   base_model=ctx.spec.model, progress=training_progress(args.quiet), on_ready=report)
    if is_main_process():  # under torchrun, once
        ctx.summary(f"{config.max_steps} steps on {len(records)} records ({kinds}); the fine-tuned pipeline is {out} "
                    f"(use --model {shlex.quote(str(out))}); losses in {run_dir / SHOWO_TRAIN_DIR / 'metrics.jsonl'}")
    return 0
