"""Show-o model configuration, read from and written to the official `config.json` layout."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..backbone import PhiConfig
from ..checkpoints import read_json_object
from ..errors import CheckpointError, ConfigError
from ..fields import check_field_types
from ..prompting.vocab import NUM_NEW_SPECIAL_TOKENS

# Backbones named by the official configs (`llm_model_path`) whose shapes we know without a download.
KNOWN_BACKBONES = {"microsoft/phi-1_5": PhiConfig}


@dataclass
class ShowoConfig:
    """What a Show-o checkpoint needs besides its weights.

    Official `config.json` keys: vocab_size, llm_vocab_size, codebook_size, num_vq_tokens, w_clip_vit,
    llm_model_path (mask_token_id is always vocab_size - 1). Ours adds `llm_config` so a checkpoint with a
    non-Phi-1.5 backbone (tiny test models, the embedded model) is self-describing, and `max_seq_length`
    (the official yaml's `dataset.preprocessing.max_seq_length`, 128 for every released demo config).
    """

    vocab_size: int = 58498
    llm_vocab_size: int = 50295
    codebook_size: int = 8192
    num_vq_tokens: int = 256
    w_clip_vit: bool = False
    clip_hidden_size: int = 1024
    llm_model_path: str = "microsoft/phi-1_5"
    max_seq_length: int = 128  # text region of the t2i layout (T); the official demo configs use 128
    llm: PhiConfig = field(default_factory=PhiConfig)

    def __post_init__(self):
        check_field_types(ShowoConfig, vars(self), "Show-o config")
        if not isinstance(self.llm, PhiConfig):
            raise ConfigError(f"Show-o config: llm must be a PhiConfig, got {type(self.llm).__name__}")
        for name in ("vocab_size", "llm_vocab_size", "codebook_size", "num_vq_tokens", "clip_hidden_size"):
            if getattr(self, name) < 1:  # a negative num_vq_tokens was a TypeError (the square root of it)
                raise ConfigError(f"Show-o config: {name} must be >= 1, got {getattr(self, name)}")
        if self.llm.vocab_size != self.vocab_size:
            self.llm = PhiConfig.from_dict({**self.llm.to_dict(), "vocab_size": self.vocab_size})
        if self.vocab_size != self.llm_vocab_size + NUM_NEW_SPECIAL_TOKENS + self.codebook_size + 1:
            raise ConfigError(
                f"inconsistent vocabulary: vocab_size {self.vocab_size} != llm_vocab_size {self.llm_vocab_size} "
                f"+ {NUM_NEW_SPECIAL_TOKENS} + codebook_size {self.codebook_size} + 1 (mask)")
        if self.max_seq_length < 2:
            raise ConfigError(f"max_seq_length must be >= 2 (the text region holds at least <bos> and <eos>), "
                              f"got {self.max_seq_length}")
        t2i_length = self.max_seq_length + self.num_vq_tokens + 3  # <t2i>, text region, <soi>, image, <eoi>
        if t2i_length > self.llm.max_position_embeddings:
            raise ConfigError(f"max_position_embeddings {self.llm.max_position_embeddings} is shorter than the "
                              f"text-to-image sequence ({t2i_length} positions)")
        side = int(round(self.num_vq_tokens ** 0.5))
        if side * side != self.num_vq_tokens:
            raise ConfigError(f"num_vq_tokens must be a square number, got {self.num_vq_tokens}")

    @property
    def mask_token_id(self) -> int:
        return self.vocab_size - 1

    @property
    def image_token_offset(self) -> int:
        return self.llm_vocab_size + NUM_NEW_SPECIAL_TOKENS

    @property
    def grid_size(self) -> int:
        """Side of the square token grid (16 for 256 tokens)."""
        return int(round(self.num_vq_tokens ** 0.5))

    @classmethod
    def from_directory(cls, directory: Path) -> "ShowoConfig":
        """From `directory/config.json` (a one-line CheckpointError when it is missing or not JSON)."""
        config_file = directory / "config.json"
        if not config_file.is_file():
            # a run directory holds its pipeline in model/ (finetune, train); a pipeline its transformer in showo/;
            # the official train.py's checkpoint-N/ its weights in unwrapped_model/
            hint = next((f": did you mean {directory / sub}?" for sub in ("model", "showo", "unwrapped_model")
                         if any((directory / sub / part / "config.json").is_file() for part in ("", "showo"))), "")
            raise CheckpointError(f"no config.json in {directory}{hint}")
        data = read_json_object(config_file)
        if data.get("_class_name") == "MAGVITv2" or "showo_magvit" in data:
            raise CheckpointError(f"{directory} is an image tokenizer (MAGVIT-v2), not a Show-o checkpoint: give it "
                                  "as vq= (--vq)")
        return cls.from_dict(data, base_dir=directory, source=str(config_file))

    @classmethod
    def from_dict(cls, d: dict, base_dir: Path | None = None, source: str = "config.json") -> "ShowoConfig":
        """From an official or our own `config.json` dict.

        The backbone comes from `llm_config` when present, else from `llm_model_path`: a known hub name
        (microsoft/phi-1_5, shapes built in, nothing downloaded) or a local directory with a Phi config.json.
        """
        check_field_types(cls, d, source)
        required = ("vocab_size", "llm_vocab_size")
        missing = [k for k in required if k not in d]
        if missing:
            raise ConfigError(f"{source} lacks {', '.join(missing)}")
        path = str(d.get("llm_model_path", "microsoft/phi-1_5"))
        if "llm_config" in d:
            llm = PhiConfig.from_dict(d["llm_config"])
        elif path in KNOWN_BACKBONES:
            llm = KNOWN_BACKBONES[path]()
        else:
            local = Path(path) if Path(path).is_absolute() or base_dir is None else base_dir / path
            if not (local / "config.json").is_file():
                raise ConfigError(f"{source}: unknown backbone {path!r}: give a directory with its config.json or use "
                                  "microsoft/phi-1_5")
            llm = PhiConfig.from_dict(read_json_object(local / "config.json"))
        if "mask_token_id" in d and d["mask_token_id"] != d["vocab_size"] - 1:
            raise ConfigError(f"{source}: mask_token_id {d['mask_token_id']} is not vocab_size - 1")
        return cls(vocab_size=int(d["vocab_size"]), llm_vocab_size=int(d["llm_vocab_size"]),
                   codebook_size=int(d.get("codebook_size", 8192)), num_vq_tokens=int(d.get("num_vq_tokens", 256)),
                   w_clip_vit=bool(d.get("w_clip_vit", False)), clip_hidden_size=int(d.get("clip_hidden_size", 1024)),
                   llm_model_path=path, max_seq_length=int(d.get("max_seq_length", 128)), llm=llm)

    def to_dict(self) -> dict:
        """The official keys (so the official code can read it too) plus `llm_config`."""
        return {"_class_name": "Showo", "vocab_size": self.vocab_size, "llm_vocab_size": self.llm_vocab_size,
                "codebook_size": self.codebook_size, "num_vq_tokens": self.num_vq_tokens,
                "w_clip_vit": self.w_clip_vit, "clip_hidden_size": self.clip_hidden_size,
                "llm_model_path": self.llm_model_path, "mask_token_id": self.mask_token_id,
                "max_seq_length": self.max_seq_length,
                "llm_config": self.llm.to_dict()}
