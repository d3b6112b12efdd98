"""Training configuration as typed dataclasses, read from and written to YAML."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.language import check_qtype_weights
from ..errors import ConfigError
from ..files import file_problem
from ..fields import check_field_types
from ..hardware import check_precision
from ..sampling.schedules import get_mask_schedule


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to `min_lr_ratio * lr` (the official schedule decays to 0)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0  # max global grad norm; None = no clipping (official default)
    official_decay_groups: bool = False  # official: only biases skip weight decay; ours: biases, norms, embeddings


MAX_ROWS = 65536  # rows of one objective in one step (the global batch): far above Show-o's own runs


@dataclass
class MixConfig:
    """Rows per step of each objective (global batch, split across ranks) and loss coefficients."""

    t2i: int = 8
    lm: int = 2
    mmu: int = 8
    story: int = 0
    caption_fraction: float = 0.25  # share of understanding rows that are full captions (the rest: one QA pair)
    # questions asked about each understanding image: > 1 packs them as branches after one shared image prefix,
    # each computing exactly its one-question row (training.batch.mmu_branch_part)
    mmu_questions: int = 1
    # relative weights of question types in QA rows, e.g. {position: 2, relation: 3}; unnamed types weigh 1
    # (default: every type the scene allows equally likely)
    mmu_qtype_weights: dict[str, float] = field(default_factory=dict)
    cond_dropout_prob: float = 0.1
    story_dropout_prob: float = 0.0  # share of story rows replaced by a null story (one image, no text): guidance
    mask_schedule: str = "cosine"
    min_masking_rate: float = 0.0
    t2i_coeff: float = 1.0
    lm_coeff: float = 0.1
    mmu_coeff: float = 1.0
    story_coeff: float = 1.0


class YamlFile:
    """YAML in and out for a config dataclass with `to_dict` and `from_dict` (which checks what it reads)."""

    def to_yaml_text(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml_text())

    @classmethod
    def from_yaml(cls, path: str | Path):
        return cls.from_dict(read_yaml(path))


@dataclass
class TrainConfig(YamlFile):
    output_dir: str = "runs/showo"
    seed: int = 0
    max_steps: int = 1000
    optim: OptimConfig = field(default_factory=OptimConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    # "fp32", "bf16" (autocast; master weights stay fp32) or "auto": bf16 where the device multiplies it natively,
    # else fp32 (showo.hardware: on an AVX2-only CPU bf16 products are emulated, hundreds of times slower)
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    distributed: str = "auto"  # "auto" (DDP when launched by torchrun), "ddp", "fsdp", "none"
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    tensorboard: bool = False
    # Train the image-code rows of the embedding and LM head as table + LFQ bits @ a shared matrix
    # (showo.training.code_bits); checkpoints stay plain Show-o weights. Not with fsdp.
    code_bit_rows: bool = False

    def __post_init__(self):
        if isinstance(self.optim, dict):
            self.optim = build_config(OptimConfig, self.optim, "optim")
        if isinstance(self.mix, dict):
            self.mix = build_config(MixConfig, self.mix, "mix")
        # the types again, for configs built in Python (from_dict checked those read from files)
        check_field_types(TrainConfig, vars(self), "train config")
        check_field_types(OptimConfig, vars(self.optim), "optim", "optim.")
        check_field_types(MixConfig, vars(self.mix), "mix", "mix.")
        self.optim.betas = tuple(self.optim.betas)
        check_precision(self.precision)
        if self.distributed not in ("auto", "ddp", "fsdp", "none"):
            raise ConfigError(f"distributed must be auto, ddp, fsdp or none, got {self.distributed!r}")
        if self.code_bit_rows and self.distributed == "fsdp":
            raise ConfigError("code_bit_rows does not run under fsdp: use ddp")
        for name in ("max_steps", "log_every", "save_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        o = self.optim
        # an AdamW step moves each weight by about lr: past 1 it destroys any network (1e30 was accepted, then
        # diverged at the second step)
        for name, ok, rule in (("lr", 0 < o.lr <= 1, "in (0, 1]"), ("eps", 0 < o.eps < 1, "in (0, 1)"),
                               ("warmup_steps", o.warmup_steps >= 0, ">= 0"),
                               ("weight_decay", o.weight_decay >= 0, ">= 0")):
            if not ok:
                raise ConfigError(f"optim.{name} must be {rule}, got {getattr(o, name)}")
        if not all(0 <= b < 1 for b in o.betas) or not 0 <= o.min_lr_ratio <= 1:
            raise ConfigError(f"optim.betas must be in [0, 1) and optim.min_lr_ratio in [0, 1], got {list(o.betas)} "
                              f"and {o.min_lr_ratio}")
        if o.grad_clip is not None and o.grad_clip <= 0:
            raise ConfigError(f"optim.grad_clip must be > 0 or null (no clipping), got {o.grad_clip}")
        m = self.mix
        if (min(m.t2i, m.lm, m.mmu, m.story) < 0 or m.t2i + m.lm + m.mmu + m.story == 0
                or max(m.t2i, m.lm, m.mmu, m.story) > MAX_ROWS):  # 10**9 grew without end, deaf to SIGTERM
            raise ConfigError(f"mix: row counts must be in [0, {MAX_ROWS}] and not all zero, got t2i {m.t2i}, "
                              f"lm {m.lm}, mmu {m.mmu}, story {m.story}")
        if m.mmu_questions < 1:
            raise ConfigError(f"mix.mmu_questions must be >= 1, got {m.mmu_questions}")
        m.mmu_qtype_weights = check_qtype_weights(m.mmu_qtype_weights, "mix.mmu_qtype_weights")
        get_mask_schedule(m.mask_schedule)  # an unknown name fails here, before anything is written
        for name in ("caption_fraction", "cond_dropout_prob", "story_dropout_prob", "min_masking_rate"):
            if not 0.0 <= getattr(m, name) <= 1.0:
                raise ConfigError(f"mix.{name} must be in [0, 1], got {getattr(m, name)}")
        for name in ("t2i_coeff", "lm_coeff", "mmu_coeff", "story_coeff"):  # a negative one is gradient ascent
            if not 0.0 <= getattr(m, name) < float("inf"):
                raise ConfigError(f"mix.{name} must be a finite number >= 0, got {getattr(m, name)}")
        if not 0 <= self.seed < 2 ** 63:  # torch.manual_seed's range
            raise ConfigError(f"seed must be in [0, 2**63), got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["optim"]["betas"] = list(self.optim.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return build_config(cls, d, "train config")


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last one silently, so a value
    appended to the end of a recipe would override the first without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` keys may be overridden, as YAML says
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice (line "
                                                        f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file; unreadable, malformed or non-mapping files, and keys given twice, are one-line
    ConfigErrors."""
    if problem := file_problem(Path(path), "a YAML file"):
        raise ConfigError(f"{path} {problem}")
    try:
        data = yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping")
    return data


# fields whose value is itself a mapping (not a section of fields): a recipe gives them whole
MAPPING_FIELDS = {f.name for cls in (OptimConfig, MixConfig, TrainConfig) for f in dataclasses.fields(cls)
                  if str(f.type).startswith("dict")}


def merged(base: dict, changes: dict) -> dict:
    """`base` with the values of `changes`, sections merged key by key: a partial recipe changes only what it
    names and keeps the defaults it is read against (`optim: {}` changes nothing; it reset the section to the
    class defaults). A field whose value is a mapping (`mmu_qtype_weights`) is replaced whole."""
    out = dict(base)
    for k, v in changes.items():
        section = isinstance(v, dict) and isinstance(base.get(k), dict) and k not in MAPPING_FIELDS
        out[k] = merged(base[k], v) if section else v
    return out


def build_config(cls, d: dict, what: str):
    """Dataclass `cls` from the mapping `d` (`what` names it in errors): types, then unknown keys, then the
    class's own checks, each a one-line ConfigError."""
    check_field_types(cls, d, what, "" if cls is TrainConfig else f"{what}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(d) - names))  # a key that is not text, too
    if unknown:
        raise ConfigError(f"unknown {what} keys: {', '.join(unknown)}")
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"bad {what}: {e}") from None


SHOWO_TRAIN_DIR = "showo-train"  # where a run directory keeps its Show-o checkpoints (finetune, train model)


def in_run_directory(config, output_dir: Path):
    """A copy of a trainer config (`TrainConfig`, `TokenizerTrainConfig`) that writes its checkpoints to
    `output_dir`, a run directory's fixed place for them (`showo finetune`, `showo train`). An `output_dir` the
    caller set to anything but its default or that place is refused: it would otherwise be silently ignored."""
    default = type(config)().output_dir
    if config.output_dir != default and Path(config.output_dir).resolve() != Path(output_dir).resolve():
        raise ConfigError(f"output_dir {config.output_dir!r} is not used: this run keeps its checkpoints in "
                          f"{output_dir}; leave output_dir at its default ({default!r})")
    return dataclasses.replace(config, output_dir=str(output_dir))
