"""Fine-tune a Show-o pipeline (the embedded model or an official checkpoint) on your own records.

The image and text tokenizers stay frozen; the transformer trains with the same loop as the world recipes
(`Trainer`: the joint objective, AdamW with warmup and cosine decay, clipping, bf16 autocast, DDP under torchrun,
atomic checkpoints, exact resume). A run directory holds:

    finetune.json    what the run trains on (data file and its digest, base model): a resume must match it
    showo-train/     checkpoints, metrics.jsonl and the config in effect
    model/           the result as a pipeline directory (showo/, magvit/, tokenizer/), written at the end
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import torch

from ..files import path_argument, written_atomically
from ..data.records import Record, count_kinds, data_digest, read_records
from ..errors import ConfigError, OutputError
from ..pipelines import ShowoPipeline
from ..tokenizers.magvit import MagvitV2
from ..tokenizers.text import TextTokenizer
from .batch import Part
from .checkpoint import LATEST, latest_checkpoint
from .code_bits import remove_code_bit_rows
from .config import SHOWO_TRAIN_DIR, MixConfig, OptimConfig, TrainConfig, in_run_directory
from .records_source import RecordBatchSource
from .trainer import Progress, Trainer, mean_losses

MANIFEST = "finetune.json"


def default_config(records: list[Record]) -> TrainConfig:
    """A short, gentle schedule whose mix has rows of each kind the data holds (4 text-to-image, 4 understanding,
    1 text a step)."""
    kinds = count_kinds(records)
    mix = MixConfig(t2i=4 if kinds["t2i"] else 0, mmu=4 if kinds["mmu"] else 0, lm=1 if kinds["lm"] else 0,
                    story=0, cond_dropout_prob=0.1)
    optim = OptimConfig(lr=1e-4, warmup_steps=default_warmup(200), min_lr_ratio=0.1, weight_decay=0.01)
    return TrainConfig(max_steps=200, precision="auto", log_every=10, save_every=50, mix=mix, optim=optim)


def default_warmup(max_steps: int) -> int:
    """Fine-tuning's warmup: a tenth of the steps (a fixed 20 left a 5-step run below a fifth of its lr)."""
    return max_steps // 10


def started_warmup(run: Path) -> int | None:
    """The warmup the run in `run` trained with (None for a new run): a resume keeps it, so a later max_steps
    continues the schedule instead of being refused as another recipe."""
    saved = run / SHOWO_TRAIN_DIR / "config.yaml"
    if not (run / SHOWO_TRAIN_DIR / LATEST).is_file() or not saved.is_file():
        return None
    try:
        return TrainConfig.from_yaml(saved).optim.warmup_steps
    except ConfigError:  # damaged: the resume itself says so
        return None


def check_manifest(run: Path, manifest: dict) -> None:
    """Refuse to resume a run on other data or another base model; a new run records its manifest, and so does
    one that stopped before its first checkpoint (nothing was trained: a rerun on corrected data was refused)."""
    path = run / MANIFEST
    if not path.is_file() or not (run / SHOWO_TRAIN_DIR / LATEST).is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        old = None
    if not isinstance(old, dict):
        raise ConfigError(f"{path} is unreadable: remove the run directory {run} to start over")
    for key, what in (("data_sha256", "data (the file or one of its images changed)"), ("base_model", "base model"),
                      ("tokenizers_sha256", "image or text tokenizer")):
        if (key in old or key != "tokenizers_sha256") and old.get(key) != manifest[key]:  # (older runs lack it)
            raise ConfigError(f"{run} was started with another {what}: use a new --run directory")


def tokenizers_digest(vq: MagvitV2, tokenizer: TextTokenizer) -> str:
    """sha256 of the image tokenizer's weights and the text tokenizer's vocabulary: a resume on other codes (a
    different --vq, or a retrained image tokenizer) trained on silently."""
    h = hashlib.sha256()
    for name, tensor in sorted(vq.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(json.dumps(sorted(tokenizer.hf.get_vocab().items())).encode())
    return h.hexdigest()


def finetune(pipe: ShowoPipeline, data: str | Path, run: str | Path, config: TrainConfig | None = None, *,
             records: list[Record] | None = None, val_records: list[Record] | None = None,
             base_model: str | None = None, progress: Progress = True, on_ready=None) -> Path:
    """Train `pipe.model` on the records of `data` (a JSON Lines file, `data.records`) into the run directory
    `run`, resuming it when it has a checkpoint; returns `run/model`, the fine-tuned pipeline directory.

    config: default `default_config(records)`. records: `data`'s records when already read. val_records: scored at
    every log step (`val_loss_<objective>` in metrics.jsonl), each record once, with the same masks every time and
    no condition dropout, so the numbers compare across steps. base_model: recorded, and checked on resume
    (default: `pipe.model_id`). on_ready(source) is called by the main process once the images are encoded,
    before the first step (the CLI reports cut texts).

    `pipe.model` trains in place. If the call fails (a divergence, an interrupt, a bad record), it gets back the
    weights it had before (from a copy kept in CPU memory while training), so a second try does not start from
    damaged weights; under FSDP, which shards the model in place, it is left as training left it."""
    _check_arguments(pipe, config, records, val_records, on_ready, base_model)
    data, run = path_argument(data, "data"), path_argument(run, "run")
    records = read_records(data) if records is None else records
    config = default_config(records) if config is None else config
    base_model = pipe.model_id if base_model is None else base_model
    model = pipe.model
    if model.config.w_clip_vit and count_kinds(records)["mmu"] and config.mix.mmu:
        raise ConfigError("understanding rows for w_clip_vit checkpoints (CLIP features) are not supported; "
                          "set mix.mmu: 0 to fine-tune text-to-image only")
    manifest = {"data": str(data.resolve()), "data_sha256": data_digest(data, records), "base_model": base_model,
                "tokenizers_sha256": tokenizers_digest(pipe.vq, pipe.tokenizer)}
    check_manifest(run, manifest)
    config = in_run_directory(config, run / SHOWO_TRAIN_DIR)
    if val_records and config.distributed == "fsdp":  # scored on the main process only, FSDP's gathers hung
        raise ConfigError("validation records are not scored under distributed: fsdp; use ddp, or drop them")
    before = None if config.distributed == "fsdp" else {k: v.to("cpu", copy=True)
                                                         for k, v in model.state_dict().items()}
    try:
        return _train(pipe, run, config, records, val_records, manifest, progress, on_ready)
    except BaseException:
        if before is not None:
            remove_code_bit_rows(model)
            model.load_state_dict(before)
            model.eval()
        raise


def _check_arguments(pipe, config, records, val_records, on_ready, base_model) -> None:
    """One-line ConfigErrors before anything is read or written (each of these failed deep inside, or trained
    in a way the command line refuses)."""
    if not isinstance(pipe, ShowoPipeline):
        raise ConfigError(f"pipe must be a ShowoPipeline, got {type(pipe).__name__}")
    if config is not None and not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig or None, got {type(config).__name__}")
    for name, given in (("records", records), ("val_records", val_records)):  # a path here failed deep inside
        if given is not None and not (isinstance(given, list) and all(isinstance(r, Record) for r in given)):
            raise ConfigError(f"{name} must be a list of Records (data.records.read_records) or None")
    if on_ready is not None and not callable(on_ready):
        raise ConfigError(f"on_ready must be callable or None, got {type(on_ready).__name__}")
    if base_model is not None and not isinstance(base_model, str):
        raise ConfigError(f"base_model must be a string or None, got {type(base_model).__name__}")
    if pipe.model.packed:
        raise ConfigError("a pipeline with packed weights cannot be trained: load it again without pack_weights()")
    if pipe.model.dtype != torch.float32:  # bf16 weights barely moved (1.5% changed against 83% in float32)
        raise ConfigError(f"finetune keeps float32 master weights, and this pipeline's model is {pipe.model.dtype}: "
                          "load it in float32 (the recipe's precision sets the compute)")


def _train(pipe: ShowoPipeline, run: Path, config: TrainConfig, records: list[Record],
           val_records: list[Record] | None, manifest: dict, progress: Progress, on_ready) -> Path:
    model = pipe.model
    source = RecordBatchSource(records, pipe.tokenizer, pipe.vq, config.mix, model.config.max_seq_length,
                               model.config.num_vq_tokens, seed=config.seed)
    trainer = Trainer(model, source, config, device=pipe.device)
    if val_records and trainer.dist.is_main:
        mix = dataclasses.replace(config.mix, t2i=0, lm=0, mmu=0, cond_dropout_prob=0.0)
        val = RecordBatchSource(val_records, pipe.tokenizer, pipe.vq, mix, model.config.max_seq_length,
                                model.config.num_vq_tokens, seed=config.seed).every_record()
        trainer.on_log = lambda m: m.update(_validation(trainer, val))
    if trainer.dist.is_main:
        if on_ready is not None:
            on_ready(source)
        try:
            run.mkdir(parents=True, exist_ok=True)
            (run / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        except OSError as e:
            raise OutputError(f"cannot write the run directory {run}: {e.strerror or e}") from None
    trainer.resume()
    trainer.train(progress=progress)  # ends with a checkpoint of the last step
    remove_code_bit_rows(model)
    model.eval()
    out = run / "model"
    if trainer.dist.is_main:
        save_result(pipe.vq, pipe.tokenizer, latest_checkpoint(Path(config.output_dir)) / "model", out)
    return out


def _validation(trainer: Trainer, parts: list[Part]) -> dict[str, float]:
    with trainer.autocast():
        return {f"val_loss_{k}": v for k, v in mean_losses(trainer.showo, parts).items()}


def save_result(vq: MagvitV2, tokenizer: TextTokenizer, weights: Path, directory: Path) -> None:
    """A pipeline directory of the checkpoint `weights` (full tensors, also after FSDP) with these image and text
    tokenizers, never half written: what `--model` and `ShowoPipeline.from_pretrained` load."""
    try:
        with written_atomically(directory) as tmp:
            shutil.copytree(weights, tmp / "showo")
            for folder, part in ((tmp / "magvit", vq), (tmp / "tokenizer", tokenizer)):
                folder.mkdir()
                part.write_files(folder)
    except (OSError, shutil.Error) as e:  # copytree gathers its errors into a shutil.Error (a full disk)
        why = e.args[0][0][2] if isinstance(e, shutil.Error) and e.args and e.args[0] else e.strerror or e
        raise OutputError(f"cannot write {directory}: {why}; the run's last checkpoint holds the weights") from None
