"""Run by tests/test_trainer.py under torchrun: train the synthetic task, rank 0 writes the loss history."""
import json
import sys

import torch

from showo.training.config import MixConfig, OptimConfig, TrainConfig
from showo.training.trainer import Trainer
from train_helpers import SyntheticSource, tiny_model

if __name__ == "__main__":
    out, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    model, vocab = tiny_model(0)
    mix = MixConfig(t2i=4, lm=2, mmu=2)
    mode, _, option = mode.partition("+")  # "ddp+code_bit_rows": DDP with that training option on
    cfg = TrainConfig(output_dir=out, max_steps=steps, mix=mix, distributed=mode, save_every=steps,
                      optim=OptimConfig(lr=3e-3, warmup_steps=1), **({option: True} if option else {}))
    trainer = Trainer(model, SyntheticSource(vocab, 8, 4, mix), cfg)
    history = trainer.train(progress=False)
    if trainer.dist.is_main:
        with open(f"{out}/history.json", "w") as f:
            json.dump({"world_size": trainer.dist.world_size, "history": history}, f)
