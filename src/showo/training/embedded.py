"""The recipe of the embedded default model: a small Show-o trained from scratch on the procedural world.

Three stages, each resumable, each writing into one run directory:
  1. text tokenizer: byte-level BPE on world text (seconds);
  2. image tokenizer: MAGVIT-v2 (LFQ) on 64x64 world images;
  3. Show-o: the joint objective (t2i, lm, mmu, interleaved stories) with the frozen tokenizers.
`package` copies the result (weights stored in bfloat16) into the package as the embedded default.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..backbone import PhiConfig
from ..data.dataset import WorldStream
from ..data.world import WorldConfig
from ..checkpoints import find_weights, load_checked, read_json_object, read_state_dict, saved_part
from ..files import atomic_write
from ..errors import ConfigError
from ..fields import check_field_types
from ..model import Showo, ShowoConfig
from ..tokenizers.magvit import MagvitConfig, MagvitV2
from ..tokenizers.text import TextTokenizer
from .checkpoint import check_same_config, latest_checkpoint
from .code_bits import remove_code_bit_rows
from .config import (SHOWO_TRAIN_DIR, MixConfig, OptimConfig, TrainConfig, YamlFile, build_config,
                     in_run_directory, merged)
from .finetune import save_result, tokenizers_digest
from .text_tokenizer import train_bpe
from .tokenizer import TokenizerTrainConfig, TokenizerTrainer
from .trainer import Progress, Trainer
from .world_source import WorldBatchSource


@dataclass
class EmbeddedRecipe(YamlFile):
    seed: int = 0
    text_vocab_size: int = 1024
    text_corpus_samples: int = 4000
    # The decoder's full-resolution level has 64 channels, two per GroupNorm group: with one channel per
    # group, norm_out (no residual around it) erases the absolute colour of flat regions, and the
    # reconstruction of flat backgrounds stalls (measured: loss 0.67 vs 0.33 after 60 steps).
    magvit: MagvitConfig = field(default_factory=lambda: MagvitConfig(
        encoder_ch=32, encoder_ch_mult=(1, 2, 2, 4), encoder_num_res_blocks=(1, 1, 1, 1),
        decoder_ch=32, decoder_ch_mult=(2, 2, 2, 4), decoder_num_res_blocks=(1, 1, 1, 1),
        z_channels=12, resolution=64))
    tokenizer_train: TokenizerTrainConfig = field(default_factory=lambda: TokenizerTrainConfig(
        max_steps=5000, batch_size=16, lr=3e-3, warmup_steps=200, precision="auto", save_every=250,
        foreground_weight=3.0))
    hidden_size: int = 256
    num_layers: int = 8
    num_heads: int = 8
    max_seq_length: int = 40
    # Start the Show-o stage from these weights instead of a random init: a Show-o directory (a checkpoint's
    # `model/`) or a saved pipeline (a finished run's `model/`, whose `showo/` is used). Continue or fine-tune with a
    # fresh optimizer and schedule. Ignored once the run has a checkpoint.
    # It may have another image codebook (a new image tokenizer): its image-code rows then start fresh.
    init_from: str | None = None
    # With init_from: start the image-code rows of the embedding and LM head fresh even when the codebook size is
    # the same (a retrained image tokenizer, whose codes mean something else). Another size always starts them fresh.
    init_fresh_image_codes: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=3000, precision="auto", save_every=100, log_every=20,
        optim=OptimConfig(lr=1.5e-3, warmup_steps=150, weight_decay=0.05, min_lr_ratio=0.1, grad_clip=1.0),
        mix=MixConfig(t2i=12, lm=2, mmu=14, story=2, cond_dropout_prob=0.1, lm_coeff=0.2)))

    def __post_init__(self):
        """Every value is checked here, so that `train all` fails before its first stage, not after it."""
        check_field_types(EmbeddedRecipe, vars(self), "recipe")
        for name in ("text_vocab_size", "text_corpus_samples", "hidden_size", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.text_vocab_size > 1_000_000:  # 10**12 aborted the process inside the tokenizer trainer
            raise ConfigError(f"text_vocab_size must be at most 1000000, got {self.text_vocab_size}")
        if self.hidden_size % self.num_heads or self.hidden_size // self.num_heads % 4:
            raise ConfigError(f"hidden_size / num_heads must be a whole multiple of 4 (half of each head is "
                              f"rotary, in pairs), got {self.hidden_size} / {self.num_heads}")
        if self.max_seq_length < 2:
            raise ConfigError(f"max_seq_length must be >= 2, got {self.max_seq_length}")
        if not 0 <= self.seed < 2 ** 63:  # torch.manual_seed's range
            raise ConfigError(f"seed must be in [0, 2**63), got {self.seed}")
        if self.train.seed != TrainConfig().seed:  # the world's scenes and every draw follow the top-level seed
            raise ConfigError(f"train.seed {self.train.seed} is not used by a recipe: set the top-level seed "
                              f"(now {self.seed}), which picks the scenes and seeds training")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["magvit"] = self.magvit.to_dict()
        d["tokenizer_train"] = asdict(self.tokenizer_train)
        d["train"] = self.train.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EmbeddedRecipe":
        """A recipe from a mapping; what it leaves out (a whole section or single keys of one) keeps the default
        recipe's values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(map(str, set(d) - known))
        if unknown:
            raise ConfigError(f"unknown recipe keys: {', '.join(unknown)}")
        check_field_types(cls, d, "recipe")
        d = merged(cls().to_dict(), d)
        if "magvit" in d:
            d["magvit"] = MagvitConfig.from_dict(d["magvit"])
        if "tokenizer_train" in d:
            d["tokenizer_train"] = build_config(TokenizerTrainConfig, d["tokenizer_train"], "tokenizer_train")
        if "train" in d:
            d["train"] = TrainConfig.from_dict(d["train"])
        return cls(**d)


def world_texts(recipe: EmbeddedRecipe):
    """Every kind of text the model will read or write: prompts, questions, answers, captions, stories."""
    cfg = WorldConfig()
    streams = {k: WorldStream.for_split("train", cfg, kind=k) for k in ("t2i", "mmu", "lm", "story")}
    for i in range(recipe.text_corpus_samples):
        yield streams["t2i"].sample(i)["prompt"]
        m = streams["mmu"].sample(i)
        yield f"USER: \n{m['question']} ASSISTANT: {m['answer']}"
        yield streams["lm"].sample(i)["text"]
        if i % 4 == 0:
            yield " ".join(streams["story"].sample(i)["sentences"])


def build_text_tokenizer(run: Path, recipe: EmbeddedRecipe) -> TextTokenizer:
    out = run / "tokenizer"
    codebook = 2 ** recipe.magvit.z_channels
    if (out / "tokenizer.json").is_file():
        return TextTokenizer.from_pretrained(out, codebook)
    tok = train_bpe(world_texts(recipe), recipe.text_vocab_size, codebook)
    tok.save_pretrained(out)
    return tok


def world_images(batch_size: int, config: WorldConfig | None = None):
    """`images(step)`: a batch of train-split world images in [-1, 1], a function of the step only."""
    stream = WorldStream.for_split("train", config or WorldConfig(), kind="t2i")
    return lambda step: torch.stack([stream.sample(step * batch_size + i)["image"] for i in range(batch_size)])


def train_image_tokenizer(run: Path, recipe: EmbeddedRecipe, progress: Progress = True) -> MagvitV2:
    torch.manual_seed(recipe.seed)
    cfg = in_run_directory(recipe.tokenizer_train, run / "magvit-train")
    trainer = TokenizerTrainer(MagvitV2(recipe.magvit), world_images(cfg.batch_size), cfg)  # starts from init_from
    trainer.resume()
    trainer.train(progress=progress)
    trainer.model.eval().save_pretrained(run / "magvit")
    return trainer.model


def build_model(tok: TextTokenizer, recipe: EmbeddedRecipe, num_vq_tokens: int) -> Showo:
    v = tok.vocab
    llm = PhiConfig(vocab_size=v.size, hidden_size=recipe.hidden_size, intermediate_size=4 * recipe.hidden_size,
                    num_hidden_layers=recipe.num_layers, num_attention_heads=recipe.num_heads,
                    max_position_embeddings=1024)
    cfg = ShowoConfig(vocab_size=v.size, llm_vocab_size=v.text_size, codebook_size=v.codebook_size,
                      num_vq_tokens=num_vq_tokens, max_seq_length=recipe.max_seq_length,
                      llm_model_path="showo-world", llm=llm)
    torch.manual_seed(recipe.seed)
    model = Showo(cfg)
    for name, p in model.named_parameters():  # GPT-2 style init: N(0, 0.02) matrices, zero biases
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.02)
        elif name.endswith("bias"):
            torch.nn.init.zeros_(p)
    return model


def train_showo(run: Path, recipe: EmbeddedRecipe, progress: Progress = True) -> Showo:
    tok = build_text_tokenizer(run, recipe)
    vq = MagvitV2.from_pretrained(run / "magvit")
    side = WorldConfig().image_size // vq.config.downsample_factor
    model = build_model(tok, recipe, side * side)
    cfg = in_run_directory(recipe.train, run / SHOWO_TRAIN_DIR)
    source = WorldBatchSource(tok, vq, cfg.mix, recipe.max_seq_length, seed=recipe.seed)
    if recipe.init_from and latest_checkpoint(Path(cfg.output_dir)) is None:  # a resumed run has its own weights
        # before the trainer reparametrizes the model (code_bit_rows)
        init_weights(model, Path(recipe.init_from), fresh_image_codes=recipe.init_fresh_image_codes)
    trainer = Trainer(model, source, cfg)
    check_stage_recipe(Path(cfg.output_dir), recipe, trainer.dist.is_main, tokenizers_digest(vq, tok))
    trainer.resume()
    trainer.train(progress=progress)
    remove_code_bit_rows(model)
    if trainer.dist.is_main:  # the last checkpoint as a pipeline directory: --model RUN/model
        save_result(vq, tok, latest_checkpoint(Path(cfg.output_dir)) / "model", run / "model")
    return model


# The recipe's values outside `train` that a resumed Show-o stage must keep: the seed decides the world's scenes,
# the rest the text tokenizer, the sequences and the architecture. (`train` is compared by the trainer.)
STAGE_KEYS = ("seed", "text_vocab_size", "text_corpus_samples", "hidden_size", "num_layers", "num_heads",
              "max_seq_length")


def check_stage_recipe(output_dir: Path, recipe: EmbeddedRecipe, is_main: bool, tokenizers: str | None = None
                       ) -> None:
    """Refuse to resume a Show-o stage under other `STAGE_KEYS` than it started with, or on other tokenizers
    (`tokenizers`: their digest, None before they are loaded; a retrained image tokenizer was trained on
    silently; runs from before it was kept resume as they did). Kept in `<output_dir>/recipe.json`, written when
    missing."""
    values = {k: getattr(recipe, k) for k in STAGE_KEYS}
    if tokenizers is not None:
        values["tokenizers_sha256"] = tokenizers
    kept = output_dir / "recipe.json"
    if latest_checkpoint(output_dir) is not None and kept.is_file():
        check_same_config(output_dir, read_json_object(kept), values, 0, None)  # damaged: one line, not raw JSON
    elif is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(kept, json.dumps(values, indent=2).encode())


def require_model_dir(directory: Path) -> Path:
    """The directory of the Show-o saved in `directory` (its own, or a saved pipeline's `showo/`); a one-line error
    when there is none (checked before a run creates anything)."""
    found = saved_part(directory, "showo")
    if not (found / "config.json").is_file():
        raise ConfigError(f"init_from: no Show-o model in {directory} (nor in its showo/)")
    return found


def init_weights(model: Showo, directory: Path, fresh_image_codes: bool = False) -> None:
    """Copy a saved Show-o's weights into `model`; one-line error when the architectures differ.

    The saved model may have another image codebook (Show-o moved onto a retrained image tokenizer): then the
    text, special-token and mask rows of the embedding and LM head are copied, and the image-code rows keep
    `model`'s fresh init, because the new codes mean nothing the old ones meant; `fresh_image_codes` does the same
    for a codebook of the same size (an image tokenizer retrained from scratch)."""
    directory = require_model_dir(directory)
    saved = ShowoConfig.from_directory(directory)
    state = read_state_dict(find_weights(directory))
    if saved.codebook_size != model.config.codebook_size or fresh_image_codes:
        state = with_fresh_image_rows(state, saved, model)
    load_checked(model, state, what=f"init_from {directory}")


def with_fresh_image_rows(state: dict[str, torch.Tensor], saved: ShowoConfig,
                          model: Showo) -> dict[str, torch.Tensor]:
    """`state` with its vocabulary-sized tensors resized to `model`'s codebook (see `init_weights`)."""
    if saved.llm_vocab_size != model.config.llm_vocab_size:
        raise ConfigError(f"init_from: text vocabulary {saved.llm_vocab_size} != {model.config.llm_vocab_size}; "
                          "only the image codebook may change")
    own, kept = model.state_dict(), model.config.image_token_offset
    state = dict(state)
    for name, tensor in state.items():
        if name in own and tensor.shape[:1] == (saved.vocab_size,) and len(own[name]) == model.config.vocab_size:
            rows = own[name].detach().clone()
            rows[:kept], rows[-1] = tensor[:kept], tensor[-1]  # text + special tokens, and the mask token
            state[name] = rows
    return state


def package(run: Path, dest: Path, step: int | None = None) -> Path:
    """Copy a trained run into `dest` as a pipeline directory (showo/, magvit/, tokenizer/), weights in bfloat16.

    `step`: a specific Show-o checkpoint (default: the latest)."""
    train_dir = run / SHOWO_TRAIN_DIR
    ckpt = train_dir / f"checkpoint-{step:07d}" if step is not None else latest_checkpoint(train_dir)
    if ckpt is None or not (ckpt / "model" / "config.json").is_file():
        raise ConfigError(f"no Show-o checkpoint in {train_dir}")
    model = Showo.from_pretrained(ckpt / "model", dtype=torch.bfloat16)
    vq = MagvitV2.from_pretrained(run / "magvit", dtype=torch.bfloat16)
    tok = TextTokenizer.from_pretrained(run / "tokenizer", codebook_size=model.config.codebook_size)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest / "showo")
    vq.save_pretrained(dest / "magvit")
    tok.save_pretrained(dest / "tokenizer")
    return dest
