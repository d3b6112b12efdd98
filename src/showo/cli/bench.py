"""`showo bench`: our fast paths against the official algorithms, on the same random weights."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..bench import SECTIONS, WORKLOADS
from ..errors import ConfigError
from ..files import write_file
from .outputs import check_apart, check_out_dir, check_out_file
from .values import device_name, path_arg
from .progress import say

EXIT_DISAGREE = 1

DESCRIPTION = """\
Time our fast paths against a faithful re-creation of the official algorithms (full recompute per token and per
image step, padded prompt, float masks, fp32) on the same random weights with Phi-1.5 widths, in one process,
alternating runs; every comparison checks that the outputs agree before reporting a ratio. --quick uses 2 of
the 24 layers and short generations (a few minutes on 2 cores); the default full mode uses all 24 layers,
100-token answers, 16 image steps and 256 and 1024 image tokens (an hour on 2 CPU cores). While it runs,
FILE.partial beside the --json FILE is rewritten after every measurement, so a stopped run keeps what it
measured; FILE itself is written only when the run completes. A comparison whose outputs disagree gets no ratio,
and the command then exits with code 1."""

EPILOG = """\
examples:
  showo bench --quick --json bench.json
  showo bench --json docs/benchmarks/full.json --plots docs/benchmarks/full
  showo bench --only batch memory --json part.json     # some parts only, at full depth
  showo bench --device cuda --json gpu.json            # on a GPU (memory: allocated device memory)
  showo bench --device cuda --profile mmu t2i          # where the time goes, kernel by kernel"""


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the fast paths against the official algorithms",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick", help="2 layers, short runs")
    mode.add_argument("--tiny", dest="mode", action="store_const", const="tiny",
                      help="toy shapes: checks that outputs agree (for CI), timings meaningless")
    p.set_defaults(mode="full")
    p.add_argument("--json", metavar="FILE", type=path_arg, help="write every ratio and its raw timings as JSON")
    p.add_argument("--plots", metavar="DIR", type=path_arg, help="write time-vs-length plots (PNG) into DIR")
    p.add_argument("--markdown", metavar="FILE", type=path_arg,
                   help="write the results as a Markdown table (for the docs)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                   help=f"run only these parts: {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--device", type=device_name, default="cpu", metavar="DEVICE",
                   help="cpu (default), cuda or cuda:N; auto picks cuda when there is one")
    p.add_argument("--profile", nargs="+", choices=WORKLOADS, metavar="WORKLOAD",
                   help="instead of timing: print where the time of ours goes, operation by operation (on a GPU "
                        "with device time, and decoding without CUDA graphs so that each kernel keeps its "
                        "operation), for mmu (one answer) and/or t2i (two guided steps)")
    p.add_argument("--profile-official", action="store_true", help="with --profile: the official algorithm too")


def run(args) -> int:
    from ..bench.report import markdown_table
    from ..bench.run import run as run_bench
    from .models import resolve_device

    device = resolve_device(args.device)
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"--device {args.device}: the benchmark runs on cpu or cuda, not {device}")
    if args.profile_official and not args.profile:
        raise ConfigError("--profile-official goes with --profile")
    if args.profile:
        return _profile(args, device)
    files = {flag: Path(path) for flag, path in (("--json", args.json), ("--markdown", args.markdown)) if path}
    dirs = {"--plots": Path(args.plots)} if args.plots else {}
    for flag, path in files.items():
        check_out_file(path, flag)
    for flag, path in dirs.items():
        check_out_dir(path, flag=flag)
    check_apart(files, dirs)
    results = run_bench(args.mode, args.json, args.plots, only=args.only or SECTIONS, device=device)
    if args.markdown:
        write_file(Path(args.markdown), markdown_table(results).encode(), "--markdown")
    if not results["all_outputs_agree"]:  # a bug in a fast path, not a user error
        say("error", f"outputs disagree, no ratio reported: {', '.join(results['disagree'])}")
        return EXIT_DISAGREE
    return 0


def _profile(args, device: str) -> int:
    from ..bench.harness import Bench, BenchConfig
    from ..bench.profile import profile_workloads

    given = [flag for flag, value in (("--json", args.json), ("--markdown", args.markdown), ("--plots", args.plots),
                                      ("--only", args.only)) if value]
    if given:
        raise ConfigError(f"--profile prints its tables, writes no files and runs no sections: drop {' '.join(given)}")
    bench = Bench(BenchConfig.preset(args.mode), device)
    for what in args.profile:
        for table in profile_workloads(bench, what, args.profile_official):
            print(table, flush=True)
    return 0
