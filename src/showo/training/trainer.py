"""The Show-o training loop: mixed objectives, AdamW + warmup/cosine, clipping, bf16 autocast, gradient
checkpointing, DDP/FSDP2 under torchrun, atomic checkpoints and exact resume.

Data comes from a `BatchSource`, which builds the rows of a step from (step, row index) alone; so the same
global batch is produced whatever the number of processes, and resuming needs only the step number. Losses
are sums over targets divided by the *global* number of targets of each objective, so that a run on W
processes computes the same losses and updates as one process on the same global batch.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from ..errors import ConfigError, ShowoWarning, TrainingDiverged
from ..hardware import resolve_precision
from ..model import Showo
from ..model.showo import save_showo
from ..prompting.sequences import IGNORE_INDEX
from .batch import Part, drop_unread, group_by_length, group_inputs, round_up_selection
from .checkpoint import (check_not_started, open_metrics_log, read_model_state, resume_latest, run_config,
                         save_checkpoint)
from .code_bits import add_code_bit_rows, join_state, load_apart, save_apart, split_state
from .config import TrainConfig
from .distributed import DistInfo, all_reduce_sum, barrier, init_from_env, wrap
from .optim import build_optimizer
from .stopping import stop_at_step_boundary

OBJECTIVES = ("t2i", "lm", "mmu", "story")

# How a run shows progress: True a progress bar, False nothing, or a function given one line at every log step
# (for logs without a terminal: batch jobs, nohup).
Progress = bool | Callable[[str], None]


class BatchSource(Protocol):
    def parts(self, step: int, rank: int, world_size: int) -> list[Part]:
        """This rank's share of the rows of global step `step`."""


def _ce_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")


# The LM head's row count is rounded up to a multiple of this (with positions whose targets are ignored), as
# `drop_unread` rounds the sequence length: shapes that change every step make oneDNN build and cache new bf16
# kernels every step. Embedded recipe, back-to-back runs: the process grew ~20 MB per step (4.3 GB after 150
# steps) without rounding; with it, it stays at 1.6 GB from step 25 on, and a step takes 0.63 s instead of 0.71.
HEAD_ROWS_MULTIPLE = 64


def group_loss_sums(model: torch.nn.Module, group: list[Part]) -> list[torch.Tensor]:
    """Summed cross-entropy of each part of a same-length group, in one forward pass.

    The LM head runs only where a target sits (every position of an lm row, the masked image slots of a
    t2i row, the answer of an mmu row); the official loop computes every position over the whole vocabulary
    (measured by `showo bench`: our step 1.5x faster with 2 Phi-size layers). Positions nothing depends on
    (padding) are dropped first (`drop_unread`). Same losses, same gradients."""
    ids, mask, here, nxt, positions = group_inputs(group)
    ids, mask, (here, nxt), positions = drop_unread(ids, mask, [here, nxt], positions)
    select = round_up_selection((here != IGNORE_INDEX) | (nxt != IGNORE_INDEX), HEAD_ROWS_MULTIPLE)
    logits = model(ids, attention_mask=mask, position_ids=positions, logits_slice=select)
    counts = [int(rows.sum()) for rows in select.split([p.ids.shape[0] for p in group])]
    return [_ce_sum(lg, h) + _ce_sum(lg, n) for lg, h, n in
            zip(logits.split(counts), here[select].split(counts), nxt[select].split(counts))]


@torch.no_grad()
def mean_losses(model: torch.nn.Module, parts: list[Part]) -> dict[str, float]:
    """Mean loss per objective over every target of `parts`, without gradients (held-out data; run it under the
    autocast of the precision to measure)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    device = next(model.parameters()).device
    for group in group_by_length([p.to(device) for p in parts]):
        for p, total in zip(group, group_loss_sums(model, group)):
            sums[p.name] = sums.get(p.name, 0.0) + float(total)
            counts[p.name] = counts.get(p.name, 0) + p.num_targets()
    return {k: sums[k] / max(counts[k], 1) for k in sums}


class Trainer:
    def __init__(self, model: Showo, source: BatchSource, config: TrainConfig, device: str | torch.device = "cpu",
                 on_log: Callable[[dict], None] | None = None):
        self.cfg, self.source, self.showo = config, source, model
        self.device = torch.device(device)
        self.dist: DistInfo = init_from_env(self.device)
        self.precision = resolve_precision(config.precision, self.device, warn=self.dist.is_main)  # auto: fp32/bf16
        o = config.optim
        if o.warmup_steps >= config.max_steps and self.dist.is_main:
            warnings.warn(f"optim.warmup_steps {o.warmup_steps} >= max_steps {config.max_steps}: the learning rate "
                          f"never reaches optim.lr {o.lr:g} (at most {o.lr * (config.max_steps - 1) / o.warmup_steps:.3g})"
                          "; lower warmup_steps", ShowoWarning, stacklevel=2)
        self.output_dir = Path(config.output_dir)
        model.to(self.device).train()
        model.set_gradient_checkpointing(config.gradient_checkpointing)
        if config.code_bit_rows:
            add_code_bit_rows(model)
        mode = "ddp" if config.distributed == "auto" else config.distributed
        self.model = wrap(model, mode, self.dist)
        self.optimizer, self.scheduler = build_optimizer(self.model, config.optim, config.max_steps)
        self.step = 0
        self.on_log = on_log
        self.coeff = {"t2i": config.mix.t2i_coeff, "lm": config.mix.lm_coeff, "mmu": config.mix.mmu_coeff,
                      "story": config.mix.story_coeff}

    def resume(self) -> bool:
        """Continue from `<output_dir>/latest` if it exists (weights, optimizer, scheduler, RNG, step)."""
        step = resume_latest(self.output_dir, self.model, self.optimizer, self.scheduler, self._read_checkpoint,
                             run_config(self.cfg, self.precision), self.cfg.max_steps)
        if step is not None:
            self.step = step
        return step is not None

    def _read_checkpoint(self, path: Path) -> dict:
        apart = load_apart(path)
        if bool(apart) != self.cfg.code_bit_rows:
            raise ConfigError(f"{path} was trained with code_bit_rows: {str(bool(apart)).lower()}; resume it with the "
                              "same setting")
        return join_state(read_model_state(path), apart)

    def autocast(self):
        """The training precision's autocast context (bf16, or none)."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def train_step(self) -> dict:
        """One optimizer step on the global batch of `self.step`; returns global losses and stats."""
        parts = [p.to(self.device) for p in self.source.parts(self.step, self.dist.rank, self.dist.world_size)]
        counts = torch.zeros(len(OBJECTIVES), dtype=torch.float64)
        for p in parts:
            counts[OBJECTIVES.index(p.name)] += p.num_targets()
        counts = all_reduce_sum(counts, self.dist)
        present = [k for k, c in zip(OBJECTIVES, counts) if c > 0]
        counts = counts.clamp(min=1)
        sums = {}
        total = torch.zeros((), device=self.device)
        # One context for every group: weights are cast to bf16 once per step (reparametrized ones, code_bit_rows,
        # once per group: autocast caches the casts of leaf tensors only).
        with self.autocast():
            for group in group_by_length(parts):
                for p, s in zip(group, group_loss_sums(self.model, group)):
                    norm = float(counts[OBJECTIVES.index(p.name)])
                    sums[p.name] = sums.get(p.name, 0.0) + s.detach() / norm
                    total = total + self.coeff[p.name] * s / norm
        # DDP/FSDP average gradients over ranks; our losses are already global sums, so undo the averaging.
        (total * self.dist.world_size).backward()
        clip = self.cfg.optim.grad_clip
        # the global norm (the same on every rank), also without clipping: it is what shows a divergence
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                         float("inf") if clip is None else clip))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(self.step + 1, float(total.detach()), grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        losses = torch.stack([torch.as_tensor(sums.get(k, 0.0), dtype=torch.float64).cpu() for k in OBJECTIVES])
        losses = all_reduce_sum(losses, self.dist)
        out = {"step": self.step, "lr": lr, "grad_norm": grad_norm,
               "tokens": int(sum(p.ids.numel() for p in parts)) * self.dist.world_size}
        out.update({f"loss_{k}": float(v) for k, v in zip(OBJECTIVES, losses) if k in present})
        out["loss"] = sum(self.coeff[k] * out.get(f"loss_{k}", 0.0) for k in OBJECTIVES)
        return out

    def save(self) -> None:
        def write(directory: Path, state: dict) -> None:
            plain, apart = split_state(state, self.showo.config.image_token_offset)
            save_showo(directory, self.showo.config, plain)
            save_apart(directory.parent, apart)

        save_checkpoint(self.output_dir, self.step, self.model, write, self.optimizer, self.scheduler,
                        {"config": run_config(self.cfg, self.precision)}, self.dist.is_main, self.cfg.keep_checkpoints)
        barrier(self.dist)

    def train(self, progress: Progress = True) -> list[dict]:
        """Run to `max_steps` (from the resumed step); log every `log_every`, save every `save_every` and at the end."""
        check_not_started(self.output_dir, self.step)
        history: list[dict] = []
        writer = self._tensorboard()
        log_file = None
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.cfg.to_yaml(self.output_dir / "config.yaml")
            log_file = open_metrics_log(self.output_dir, self.step)
        bar = None
        echo = progress if callable(progress) and self.dist.is_main else None
        if echo is not None and self.step > 0:  # (a bar starts at the step instead)
            echo(f"resuming at step {self.step} of {self.cfg.max_steps} from {self.output_dir}")
        if progress is True and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=self.cfg.max_steps, initial=self.step, desc="train", dynamic_ncols=True)
        t0, tokens = time.perf_counter(), 0
        with stop_at_step_boundary() as stop:  # Ctrl-C / SIGTERM: finish the step, save it, then stop
            try:
                while self.step < self.cfg.max_steps:
                    m = self.train_step()
                    tokens += m["tokens"]
                    history.append(m)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{m['loss']:.3f}", lr=f"{m['lr']:.2e}")
                    if self.step % self.cfg.log_every == 0 or self.step == self.cfg.max_steps:
                        elapsed = time.perf_counter() - t0
                        m["tokens_per_s"] = tokens / max(elapsed, 1e-9)
                        if self.on_log is not None and self.dist.is_main:
                            self.on_log(m)  # before the line is written: it may add measurements (validation losses)
                        t0, tokens = time.perf_counter(), 0  # after on_log: its time is not training throughput
                        self._record(m, log_file, echo, writer)
                    # Every rank stops at the same step (torchrun signals them all, not all at once). Not asked
                    # after the last step, so that a run still ends on the save's barrier: a collective after it
                    # let one process exit while gloo still served the other, which aborted.
                    last = self.step == self.cfg.max_steps
                    stop_now = not last and bool(all_reduce_sum(torch.tensor([float(stop.signum is not None)]),
                                                                self.dist) > 0)
                    if stop_now or last or self.step % self.cfg.save_every == 0:
                        self.save()
                    if stop_now:
                        break
            finally:
                if bar is not None:
                    bar.close()
                if log_file is not None:
                    log_file.close()
                if writer is not None:
                    writer.close()
        stop.resend()  # the handlers are back: stop as the signal would have
        return history

    def _record(self, m: dict, log_file, echo, writer) -> None:
        """Write a logged step to the metrics log, the line echo and TensorBoard (each when there is one)."""
        if log_file is not None:
            log_file.write(json.dumps(m) + "\n")
            log_file.flush()
        if echo is not None:
            echo(f"step {self.step}/{self.cfg.max_steps} loss {m['loss']:.4f} lr {m['lr']:.2e} "
                 f"{m['tokens_per_s']:,.0f} tokens/s")
        if writer is not None:
            for k, v in m.items():
                if isinstance(v, (int, float)) and k != "step":
                    writer.add_scalar(k, v, self.step)

    def _tensorboard(self):
        if not (self.cfg.tensorboard and self.dist.is_main):
            return None
        return check_tensorboard()(str(self.output_dir / "tensorboard"))


def check_tensorboard():
    """TensorBoard's SummaryWriter, or a one-line ConfigError when the package is missing (checked before a run
    starts, not after its first stages)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("tensorboard logging needs the `tensorboard` package (pip install tensorboard)") from None
    return SummaryWriter
