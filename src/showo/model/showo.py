"""Show-o: one Phi decoder over text tokens, task tokens and MAGVIT image codes (official key names)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..backbone import KVCache, PackedLinear, PhiForCausalLM, pack_linears
from ..checkpoints import CHECKPOINT_FILES, find_weights, load_checked, read_state_dict, resolve, save_weights
from ..files import saved
from ..fields import is_number
from ..hardware import check_device, check_dtype
from ..errors import CheckpointError, ConfigError, InputError
from .config import ShowoConfig

# oneDNN's rows-per-product hint for packing: 10**7 still packed on this CPU, 10**9 failed inside oneDNN
MAX_BATCH_HINT = 65536
WEIGHTS_NAME = "pytorch_model.safetensors"  # what the official loader looks for first


class Showo(nn.Module):
    """`showo` is the Phi causal LM (keys `showo.model.*`, `showo.lm_head.*`); `mm_projector` maps CLIP
    features into the embedding space for the `w_clip_vit` checkpoints."""

    def __init__(self, config: ShowoConfig):
        super().__init__()
        self.config = config
        self.showo = PhiForCausalLM(config.llm)
        if config.w_clip_vit:
            h = config.llm.hidden_size
            self.mm_projector = nn.Sequential(nn.Linear(config.clip_hidden_size, h), nn.GELU(), nn.Linear(h, h))

    def forward(self, input_ids: torch.Tensor | None = None, input_embeddings: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                cache: KVCache | None = None, start: int | torch.Tensor = 0,
                logits_slice: slice | torch.Tensor | None = None,
                vocab_slice: slice | None = None) -> torch.Tensor:
        """Float32 logits [B, q, vocab_size]; see `PhiForCausalLM.forward` for the mask, cache and slicing."""
        if not torch.compiler.is_compiling():
            self._check_inputs(input_ids, input_embeddings, attention_mask, position_ids, start)
        return self.showo(input_ids, input_embeddings, attention_mask, position_ids, cache, start, logits_slice,
                          vocab_slice)

    def _check_inputs(self, input_ids, input_embeddings, attention_mask, position_ids, start) -> None:
        """One-line InputErrors for what would fail deep inside or, worse, run: an integer [B, L] 0/1 mask (as
        Hugging Face models take) read as an additive one removed causality. Only shapes and dtypes are checked,
        plus the ids' range on the CPU (on a GPU reading them would stall the stream)."""
        if (input_ids is None) == (input_embeddings is None):
            raise InputError("give exactly one of input_ids or input_embeddings")
        x = input_ids if input_ids is not None else input_embeddings
        if not isinstance(x, torch.Tensor) or x.dim() != (2 if input_ids is not None else 3):
            raise InputError("input_ids must be a [B, L] tensor of ids, input_embeddings [B, L, hidden]")
        if input_ids is not None:
            if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
                raise InputError(f"input_ids must be integers, got {input_ids.dtype}")
            if input_ids.device.type == "cpu" and input_ids.numel() and (
                    int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.vocab_size):
                raise InputError(f"input_ids must lie in [0, {self.config.vocab_size}), got "
                                 f"{int(input_ids.min())}..{int(input_ids.max())}")
        if attention_mask is not None and not (
                isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4
                and attention_mask.shape[2] == x.shape[1]
                and (attention_mask.dtype == torch.bool or attention_mask.is_floating_point())):
            raise InputError("attention_mask must be [B, 1, q, k], boolean (True = may attend) or additive float, got "
                             + (f"{attention_mask.dtype} {list(attention_mask.shape)}"
                                if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__))
        limit = self.config.llm.max_position_embeddings
        if position_ids is None and isinstance(start, int) and start + x.shape[1] > limit:
            raise InputError(f"{start + x.shape[1]} positions exceed the model's {limit}")

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.showo.model.embed_tokens(input_ids)

    def embed_with_features(self, input_ids: torch.Tensor, features: torch.Tensor, insert_at: int) -> torch.Tensor:
        """Embed `input_ids` and insert the projected CLIP `features` ([B, P, clip_hidden]) before position
        `insert_at` (right after `<soi>`), as the official CLIP-ViT understanding path does."""
        return self.embed_with_image(input_ids, self.project_features(features), insert_at)

    def project_features(self, features: torch.Tensor) -> torch.Tensor:
        """CLIP features [B, P, clip_hidden] through `mm_projector`: image embeddings [B, P, hidden]."""
        if not self.config.w_clip_vit:
            raise ConfigError("this checkpoint has no mm_projector (w_clip_vit is false)")
        return self.mm_projector(features.to(self.dtype))

    def embed_with_image(self, input_ids: torch.Tensor, image: torch.Tensor, insert_at: int) -> torch.Tensor:
        """Embed `input_ids` with projected image embeddings ([B, P, hidden]) inserted before `insert_at`
        (for several questions about one image, which is projected once)."""
        e = self.embed(input_ids)
        return torch.cat([e[:, :insert_at], image.to(e.dtype), e[:, insert_at:]], dim=1)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return self.showo.new_cache(batch, max_len)

    def pack_weights(self, batch_hint: int = 8) -> "Showo":
        """Re-lay every linear weight for oneDNN, in place, for float32 CPU inference: batched understanding
        1.36-1.47x faster at full depth over three runs, no gain at batch 1 (0.76-1.01x; see `backbone.packed`). The LM
        head's image-code rows are packed as their own block, so image generation still computes only those.
        Irreversible: the packed model can no longer be trained, cast, moved or saved; logits change in the last
        bits."""
        if not is_number(batch_hint, integer=True) or not 1 <= batch_hint <= MAX_BATCH_HINT:
            raise ConfigError(f"batch_hint must be an integer in [1, {MAX_BATCH_HINT}], got {batch_hint!r}")
        if self.training:
            raise ConfigError("pack_weights is for inference: call model.eval() first")
        if self.dtype != torch.float32 or self.device.type != "cpu":
            raise ConfigError(f"packed weights need a float32 model on the CPU, got {self.dtype} on {self.device}")
        c = self.config
        codes = slice(c.image_token_offset, c.mask_token_id)  # what MaskGIT's vocab_slice asks for
        groups = [slice(0, codes.start), codes, slice(codes.stop, c.vocab_size)]
        pack_linears(self, batch_hint, {"showo.lm_head": groups})
        return self

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.showo.model.gradient_checkpointing = enabled

    @property
    def packed(self) -> bool:
        """True once `pack_weights` has re-laid the linear weights."""
        return any(isinstance(m, PackedLinear) for m in self.modules())

    @property
    def dtype(self) -> torch.dtype:
        return self.showo.model.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.showo.model.embed_tokens.weight.device

    # ---- loading and saving ------------------------------------------------------------------------

    @staticmethod
    def locate(path_or_id: str | Path) -> Path:
        """The local checkpoint directory of a path or hub id (fetched when it is not in the hub cache)."""
        directory = resolve(path_or_id, allow_patterns=["config.json", "*.safetensors", "*.bin", "*.index.json"],
                            needs=CHECKPOINT_FILES)
        if directory.is_file():
            raise CheckpointError(f"expected a checkpoint directory, got the file {directory}")
        return directory

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, dtype: torch.dtype | None = None,
                        device: str | torch.device = "cpu", config: ShowoConfig | None = None) -> "Showo":
        """Load an official checkpoint directory (config.json + pytorch_model.safetensors or .bin), a hub id
        (e.g. `showlab/show-o`), or a directory written by `save_pretrained`. No conversion step."""
        check_dtype(dtype)
        device = check_device(device)
        if config is not None and not isinstance(config, ShowoConfig):
            raise ConfigError(f"config must be a ShowoConfig or None, got {type(config).__name__}")
        directory = cls.locate(path_or_id)
        if config is None:
            config = ShowoConfig.from_directory(directory)
        state = read_state_dict(find_weights(directory))
        with torch.device("meta"):
            model = cls(config)
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        load_checked(model, state, what=f"checkpoint {directory}", assign=True)
        return model.to(device).eval()

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + pytorch_model.safetensors into `directory`, atomically (other files there are kept)."""
        save_showo(directory, self.config, self.state_dict())


def save_showo(directory: str | Path, config: ShowoConfig, state: dict[str, torch.Tensor]) -> None:
    """Write a Show-o checkpoint directory from a state dict (also used for gathered FSDP weights), atomically."""
    saved(directory, "the model", lambda folder: write_showo(folder, config, state))


def write_showo(folder: Path, config: ShowoConfig, state: dict[str, torch.Tensor]) -> None:
    """The weights and config.json into `folder`, as they are (`save_showo` is the atomic way)."""
    save_weights({k: v.detach().contiguous().cpu() for k, v in state.items()}, folder / WEIGHTS_NAME)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2))


def check_vocab(model: Showo, vocab) -> None:
    """Refuse a tokenizer whose layout does not match the checkpoint (ids would silently be wrong)."""
    c = model.config
    if (vocab.text_size, vocab.codebook_size, vocab.size) != (c.llm_vocab_size, c.codebook_size, c.vocab_size):
        raise ConfigError(
            f"tokenizer layout (text {vocab.text_size}, codes {vocab.codebook_size}, total {vocab.size}) does not "
            f"match the model (text {c.llm_vocab_size}, codes {c.codebook_size}, total {c.vocab_size})")
