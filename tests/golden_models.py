"""Builders for the golden set's tiny official models (every dimension read from golden.json)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from showo.model import Showo, ShowoConfig


def showo_config(golden) -> ShowoConfig:
    return ShowoConfig.from_dict(golden.meta["showo_config"], base_dir=golden.root)


def official_checkpoint_dir(golden, directory: Path, fmt: str = "safetensors") -> Path:
    """Lay the golden weights out as an official checkpoint directory (config.json + pytorch_model.*)."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = dict(golden.meta["showo_config"])
    cfg["llm_model_path"] = str(golden.root / cfg["llm_model_path"])
    (directory / "config.json").write_text(json.dumps(cfg))
    state = golden.weights("showo_weights.safetensors")
    if fmt == "safetensors":
        save_file(state, str(directory / "pytorch_model.safetensors"))
    else:
        torch.save(state, str(directory / "pytorch_model.bin"))
    return directory


def showo_model(golden) -> Showo:
    model = Showo(showo_config(golden))
    model.load_state_dict(golden.weights("showo_weights.safetensors"), strict=True)
    return model.eval()
