"""Run by tests/test_trainer.py under torchrun: train the synthetic task, rank 0 writes the loss history.

Mode "stop": rank 1 alone sends itself SIGTERM after step 2 (torchrun's processes get a scheduler's signal one
by one); each rank writes the step it stopped at and the exit code its signal handler asked for."""
import atexit
import json
import os
import signal
import sys

import torch

from train_helpers import tiny_trainer


def _leave(signum, frame):
    raise SystemExit(143)  # what the CLI's handler does: an exception that unwinds


def _record_group_at_exit(out: str) -> None:
    """Registered before the trainer joins the group, so it runs after the trainer's own exit handler."""
    def record():
        rank = os.environ["RANK"]
        with open(f"{out}/rank{rank}-exit.json", "w") as f:
            json.dump({"group_alive": torch.distributed.is_initialized()}, f)
    atexit.register(record)


if __name__ == "__main__":
    out, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _record_group_at_exit(out)
    torch.set_num_threads(1)
    if mode == "stop":
        signal.signal(signal.SIGTERM, _leave)
        trainer = tiny_trainer(out, steps, distributed="ddp", log_every=1)
        take_step = trainer.train_step

        def step_then_signal():
            m = take_step()
            if trainer.dist.rank == 1 and trainer.step == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return m

        trainer.train_step = step_then_signal
        code = None
        try:
            trainer.train(progress=False)
        except SystemExit as e:
            code = e.code
        with open(f"{out}/rank{trainer.dist.rank}.json", "w") as f:
            json.dump({"step": trainer.step, "exit": code}, f)
        sys.exit(0)
    mode, _, option = mode.partition("+")  # "ddp+code_bit_rows": DDP with that training option on
    trainer = tiny_trainer(out, steps, distributed=mode, **({option: True} if option else {}))
    history = trainer.train(progress=False)
    if trainer.dist.is_main:
        with open(f"{out}/history.json", "w") as f:
            json.dump({"world_size": trainer.dist.world_size, "history": history}, f)
