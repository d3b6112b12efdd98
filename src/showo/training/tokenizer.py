"""Training the MAGVIT-v2 image tokenizer (the official release has none; spec §7.5, issues #22/#68).

Objective: pixel reconstruction (MSE + L1) plus the lookup-free quantizer's own losses (commitment, and the
entropy term that makes each code confident while keeping the codebook used). No GAN or perceptual loss:
they need pretrained networks we cannot download, and on flat procedural images MSE + L1 reach > 30 dB PSNR.
Single process; resumable with the same atomic checkpoints as Show-o training.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..checkpoints import saved_part
from ..errors import ConfigError, TrainingDiverged
from ..fields import check_field_types
from ..hardware import check_precision, resolve_precision
from ..tokenizers.lfq import code_bits
from ..tokenizers.magvit import MagvitV2
from .checkpoint import (check_not_started, latest_checkpoint, open_metrics_log, resume_latest, run_config,
                         save_checkpoint)
from .optim import lr_factor
from .stopping import stop_at_step_boundary
from .trainer import Progress


@dataclass
class TokenizerTrainConfig:
    output_dir: str = "runs/magvit"
    max_steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    quantizer_weight: float = 1.0  # multiplies the LFQ commitment loss (already x0.1 inside, as official)
    entropy_weight: float = 1.0  # multiplies the LFQ per-bit entropy loss (already x0.1 inside, as official)
    # "codebook": the MAGVIT-v2 paper's entropy over the whole codebook (per-position entropy minus entropy of
    # the batch's average code distribution). The official per-bit form ("bitwise") balances each bit but not
    # their combinations: measured on the world, it collapsed to 4 of 4096 codes in 150 steps; "codebook"
    # kept ~450 codes in use per batch of 1024 positions at the same step (~800 by the end of training).
    entropy: str = "codebook"
    codebook_entropy_weight: float = 0.1
    # Pixels farther than 0.25 (on [-1, 1]) from the image's median colour count (1 + foreground_weight) times:
    # in sparse scenes the background dominates a plain mean and object colours are learnt last (measured on
    # the world: after 500 steps objects were still colourless blobs). 0 = plain mean.
    foreground_weight: float = 0.0
    # L1 between the horizontal and vertical pixel differences of reconstruction and image: weighs object
    # outlines, which tell small shapes apart, above flat areas. 0 = off.
    edge_weight: float = 0.0
    # "bf16": autocast the convolutions (2-3x faster on AMX CPUs); losses in fp32. "auto": bf16 where native.
    precision: str = "fp32"
    # Start from these weights (a tokenizer directory, or a saved pipeline whose magvit/ is used) instead of a random
    # init; ignored once the run has a checkpoint.
    init_from: str | None = None
    # Train the decoder alone, the encoder and quantizer frozen: every image keeps its codes, so a Show-o trained
    # on them stays valid while its images get sharper (the pixel losses alone; the quantizer's have no effect).
    decoder_only: bool = False
    log_every: int = 50
    save_every: int = 500
    keep_checkpoints: int = 2

    def __post_init__(self):
        check_field_types(TokenizerTrainConfig, vars(self), "tokenizer_train", "tokenizer_train.")
        for name in ("max_steps", "batch_size", "log_every", "save_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tokenizer_train.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.grad_clip < math.inf:
            raise ConfigError(f"tokenizer_train.grad_clip must be a finite number > 0, got {self.grad_clip}")
        if not 0 < self.lr <= 1:  # as optim.lr (TrainConfig): past 1 an AdamW step destroys any network
            raise ConfigError(f"tokenizer_train.lr must be in (0, 1], got {self.lr}")
        for name in ("warmup_steps", "weight_decay", "l1_weight", "mse_weight", "quantizer_weight", "entropy_weight",
                     "codebook_entropy_weight", "foreground_weight", "edge_weight"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"tokenizer_train.{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"tokenizer_train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.entropy not in ("codebook", "bitwise"):
            raise ConfigError(f"tokenizer_train.entropy must be codebook or bitwise, got {self.entropy!r}")
        check_precision(self.precision, "tokenizer_train.precision")


def codebook_entropy_loss(z: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Mean per-position entropy of the code distribution minus the entropy of the batch's average code
    distribution (MAGVIT-v2 paper). Each position's distribution over the 2^C codes factorises over bits, with
    bit logits `[-(z+1)^2, -(z-1)^2]` as in the official quantizer; `bits` is `code_bits(C)` as float."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()
    log_p = torch.stack([-(flat + 1).pow(2), -(flat - 1).pow(2)], dim=-1).log_softmax(-1)  # [N, C, {0, 1}]
    sample = -(log_p.exp() * log_p).sum((-1, -2)).mean()
    log_codes = log_p[..., 0] @ (1 - bits).T + log_p[..., 1] @ bits.T  # [N, 2^C]
    average = log_codes.exp().mean(0)
    return sample + (average * average.clamp_min(1e-12).log()).sum()


def pixel_weights(x: torch.Tensor, foreground_weight: float) -> torch.Tensor:
    """[B, 1, H, W] weights with mean 1: foreground pixels (far from the image's median colour) count more."""
    if foreground_weight == 0:
        return torch.ones_like(x[:, :1])
    median = x.flatten(2).median(-1).values[..., None, None]
    w = 1 + foreground_weight * ((x - median).abs().amax(1, keepdim=True) > 0.25).float()
    return w / w.mean((1, 2, 3), keepdim=True)


def edge_l1(reconstruction: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the neighbouring-pixel differences (along W and along H) of two images."""
    dw = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dh = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return ((dw(reconstruction) - dw(reference)).abs().mean() + (dh(reconstruction) - dh(reference)).abs().mean()) / 2


def psnr(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of pixels in [-1, 1] (compared on the [0, 1] scale after clamping)."""
    a = ((reference + 1) / 2).clamp(0, 1)
    b = ((reconstruction + 1) / 2).clamp(0, 1)
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def require_tokenizer_dir(directory: Path) -> Path:
    """The directory of the image tokenizer saved in `directory` (its own, or a saved pipeline's `magvit/`); a
    one-line ConfigError when there is none (for tokenizer_train.init_from)."""
    found = saved_part(directory, "magvit")
    if not (found / "config.json").is_file():
        raise ConfigError(f"tokenizer_train.init_from: no image tokenizer in {directory} (nor in its magvit/)")
    return found


def start_from(model: MagvitV2, directory: Path) -> None:
    """Copy the weights of the tokenizer saved in `directory` into `model` (the same architecture)."""
    directory = require_tokenizer_dir(directory)
    saved = MagvitV2.from_pretrained(directory, dtype=torch.float32)
    if saved.config != model.config:
        raise ConfigError(f"tokenizer_train.init_from {directory}: its architecture differs from the model's "
                          "(the recipe's magvit section)")
    model.load_state_dict(saved.state_dict())


class TokenizerTrainer:
    """`images(step) -> [B, 3, H, W] in [-1, 1]` must depend on the step only (resume needs nothing else)."""

    def __init__(self, model: MagvitV2, images: Callable[[int], torch.Tensor], config: TokenizerTrainConfig,
                 on_log: Callable[[dict], None] | None = None):
        self.model, self.images, self.cfg, self.on_log = model.train(), images, config, on_log
        self.output_dir = Path(config.output_dir)
        if config.init_from and latest_checkpoint(self.output_dir) is None:  # a resumed run has its own weights
            start_from(model, Path(config.init_from))
        if config.decoder_only:
            model.encoder.requires_grad_(False)
            model.quantize.requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, betas=(0.9, 0.99),
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config.warmup_steps, config.max_steps, config.min_lr_ratio))
        self.step = 0
        self.device = next(model.parameters()).device  # the model's: images are moved there
        self.precision = resolve_precision(config.precision, self.device)
        self.bits = code_bits(model.config.z_channels).float().to(self.device)

    def resume(self) -> bool:
        step = resume_latest(self.output_dir, self.model, self.optimizer, self.scheduler,
                             config=run_config(self.cfg, self.precision), max_steps=self.cfg.max_steps)
        if step is not None:
            self.step = step
        return step is not None

    def train_step(self) -> dict:
        x = self.images(self.step).to(self.device)
        c = self.cfg
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.set_grad_enabled(not c.decoder_only):  # a frozen encoder needs no graph
            with autocast:
                z = self.model.encoder(x)
            z = z.float()  # quantize and its losses in float32
            q = self.model.quantize(z)
        with autocast:
            recon = self.model.decoder(q.z_q)
        recon = recon.float()
        w = pixel_weights(x, c.foreground_weight)
        mse, l1 = (w * (recon - x) ** 2).mean(), (w * (recon - x).abs()).mean()
        edge = edge_l1(recon, x) if c.edge_weight else torch.zeros(())
        loss = c.mse_weight * mse + c.l1_weight * l1 + c.edge_weight * edge
        entropy = torch.zeros(())
        if not c.decoder_only:  # the quantizer's losses only move the (frozen) encoder
            if c.entropy == "codebook":
                entropy = c.codebook_entropy_weight * codebook_entropy_loss(z, self.bits)
            else:
                entropy = c.entropy_weight * q.entropy_loss
            loss = loss + c.quantizer_weight * q.quantizer_loss + entropy
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(self.step + 1, float(loss), grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        with torch.no_grad():
            used = q.indices.unique().numel()
        loss, mse, l1 = loss.detach(), mse.detach(), l1.detach()
        return {"step": self.step, "loss": float(loss), "mse": float(mse), "l1": float(l1),
                "edge": float(edge.detach()),
                "quantizer": float(q.quantizer_loss.detach()), "entropy": float(entropy.detach()),
                "psnr": float(psnr(x, recon.detach()).mean()), "codes_used": used, "lr": lr, "grad_norm": grad_norm}

    def save(self) -> None:
        write = lambda d, state: _save_magvit(self.model, d)  # noqa: E731
        save_checkpoint(self.output_dir, self.step, self.model, write, self.optimizer, self.scheduler,
                        {"config": run_config(self.cfg, self.precision)}, True, self.cfg.keep_checkpoints)

    def train(self, progress: Progress = True) -> list[dict]:
        """Run to `max_steps` (from the resumed step); `progress` as for `Trainer.train`."""
        from tqdm import tqdm

        check_not_started(self.output_dir, self.step)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        history = []
        bar = tqdm(total=self.cfg.max_steps, initial=self.step, desc="tokenizer", disable=progress is not True)
        t0 = time.perf_counter()
        # Ctrl-C / SIGTERM: finish the step, save it, then stop (training.stopping)
        with stop_at_step_boundary() as stop, open_metrics_log(self.output_dir, self.step) as log:
            while self.step < self.cfg.max_steps:
                m = self.train_step()
                history.append(m)
                bar.update(1)
                bar.set_postfix(loss=f"{m['loss']:.4f}", psnr=f"{m['psnr']:.1f}")
                if self.step % self.cfg.log_every == 0 or self.step == self.cfg.max_steps:
                    m["seconds"] = time.perf_counter() - t0
                    log.write(json.dumps(m) + "\n")
                    log.flush()
                    if self.on_log is not None:
                        self.on_log(m)
                    if callable(progress):
                        progress(f"step {self.step}/{self.cfg.max_steps} loss {m['loss']:.4f} "
                                 f"PSNR {m['psnr']:.1f} dB")
                due = self.step % self.cfg.save_every == 0 or self.step == self.cfg.max_steps
                if due or stop.signum is not None:
                    self.save()
                if stop.signum is not None:
                    break
        bar.close()
        stop.resend()
        self.model.eval()
        return history


def _save_magvit(model: MagvitV2, directory: Path) -> None:
    was_training = model.training
    model.save_pretrained(directory)
    model.train(was_training)


@torch.no_grad()
def evaluate_reconstruction(model: MagvitV2, images: torch.Tensor, batch_size: int = 64) -> dict:
    """Mean PSNR (dB) and code usage of encode -> decode on `images` [B, 3, H, W] in [-1, 1]."""
    model.eval()
    scores, codes = [], []
    for i in range(0, images.shape[0], batch_size):
        x = images[i: i + batch_size]
        z_q, c = model.encode(x)
        scores.append(psnr(x, model.decode(z_q)))
        codes.append(c.flatten())
    all_codes = torch.cat(codes)
    p = torch.bincount(all_codes, minlength=model.config.codebook_size).float()
    p = p[p > 0] / p.sum()
    return {"psnr": float(torch.cat(scores).mean()), "codes_used": int(all_codes.unique().numel()),
            "code_perplexity": float(math.exp(float(-(p * p.log()).sum())))}
