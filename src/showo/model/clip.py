"""The CLIP-ViT vision tower of the `w_clip_vit` checkpoints (not stored in them: loaded from a local CLIP dir).

Features are the second-to-last encoder layer's hidden states with the class token dropped (spec §6.6); they
go through `Showo.mm_projector` and are spliced between `<soi>` and `<eoi>`. The model is transformers'
`CLIPVisionModel`; the pre-processing is re-done here with PIL because transformers' image processors now
want torchvision for their default backend, which we do not depend on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from huggingface_hub.errors import StrictDataclassError
from PIL import Image

from ..checkpoints import CHECKPOINT_FILES, find_weights, load_checked, read_json_object, read_state_dict, resolve
from ..errors import CheckpointError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """CLIPImageProcessor's recipe: shortest side to `size` (bicubic), centre crop, scale to [0,1], normalise."""
    image = image.convert("RGB")
    w, h = image.size
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


class ClipVisionTower(torch.nn.Module):
    """Frozen CLIP vision encoder returning [B, num_patches, clip_hidden] features."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def num_patches(self) -> int:
        return (self.model.config.image_size // self.model.config.patch_size) ** 2

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, dtype: torch.dtype = torch.float32) -> "ClipVisionTower":
        """A local directory (or hub id) holding a CLIP vision or full CLIP `config.json` and weights,
        e.g. openai/clip-vit-large-patch14-336. Only the vision tower's weights are used."""
        from transformers import CLIPVisionConfig, CLIPVisionModel

        directory = resolve(path_or_id, allow_patterns=["config.json", "*.safetensors", "*.bin"],
                            needs=CHECKPOINT_FILES)
        config_file = directory / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"no config.json in CLIP directory {directory}")
        raw = read_json_object(config_file)
        try:
            config = CLIPVisionConfig(**raw.get("vision_config", raw))
        except (TypeError, ValueError, StrictDataclassError) as e:  # transformers 5 checks field types strictly
            raise CheckpointError(f"{config_file}: not a CLIP vision config ({str(e).splitlines()[0]})") from None
        state = read_state_dict(find_weights(directory, ("model.safetensors", "pytorch_model.safetensors",
                                                         "pytorch_model.bin")))
        model = CLIPVisionModel(config)
        own = model.state_dict()
        # Checkpoints name the tower `vision_model.*` (full CLIP or CLIPVisionModel of transformers 4.x);
        # transformers 5 keys the same tensors without that prefix. Accept both; drop the text tower.
        state = {k.removeprefix("vision_model."): v for k, v in state.items()
                 if k.startswith("vision_model.") or k.split(".")[0] in {"embeddings", "encoder", "pre_layrnorm", "post_layernorm"}}
        if next(iter(own)).startswith("vision_model."):
            state = {f"vision_model.{k}": v for k, v in state.items()}
        state.update({k: own[k] for k in own.keys() - state.keys() if k.endswith("position_ids")})
        load_checked(model, state, what=f"CLIP checkpoint {directory}")
        return cls(model.to(dtype))

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values.to(self.model.dtype), output_hidden_states=True)
        return out.hidden_states[-2][:, 1:]
