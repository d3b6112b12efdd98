"""`showo bench`: our fast paths against a faithful re-creation of the official algorithms, side by side."""

#: The parts `showo bench --only` can select, in the order they run, and what `--profile` can profile (here, not
#: in run.py and profile.py, so that the command line parser can list them without importing torch).
SECTIONS = ("memory", "serve", "mmu", "t2i", "bf16", "batch", "train")
WORKLOADS = ("mmu", "t2i")
