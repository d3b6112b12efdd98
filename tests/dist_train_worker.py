"""Run by tests/test_trainer.py under torchrun: train the synthetic task, rank 0 writes the loss history."""
import json
import sys

import torch

from train_helpers import tiny_trainer

if __name__ == "__main__":
    out, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    mode, _, option = mode.partition("+")  # "ddp+code_bit_rows": DDP with that training option on
    trainer = tiny_trainer(out, steps, distributed=mode, **({option: True} if option else {}))
    history = trainer.train(progress=False)
    if trainer.dist.is_main:
        with open(f"{out}/history.json", "w") as f:
            json.dump({"world_size": trainer.dist.world_size, "history": history}, f)
