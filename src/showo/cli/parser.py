"""The argparse tree of `showo`: one subcommand per task, options grouped, examples in every epilog.

Importing this module does not import torch, so `showo --help` answers at once. Defaults mirror the pipeline
methods' defaults (`DEFAULTS`; a test checks they agree) and every number is validated here, before any model
is loaded.
"""
from __future__ import annotations

import argparse

from ..errors import ShowoError
from .values import (device_name, image_count, non_negative_float, non_negative_int, path_arg, positive_int,
                     probability, scale, steps_count, text_temperature)

PROG = "showo"
DTYPES = ("float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
#: The Python API's (and diffusers') argument names, as options users try, and the option that means it here
API_NAMES = {"--num-inference-steps": ("--steps",), "--guidance-scale": ("--guidance",),
             "--num-images-per-prompt": ("--images-per-prompt", "--num-images"),
             "--num-images": ("--images-per-prompt",),
             "--text-temperature": ("--temperature",), "--output": ("--out",), "--output-dir": ("--out",),
             "--torch-dtype": ("--dtype",)}

#: Per-command defaults, equal to the corresponding `ShowoPipeline` method's keyword defaults.
DEFAULTS: dict[str, dict[str, object]] = {
    "generate": {"steps": 18, "guidance": 1.75, "temperature": 1.0, "schedule": "cosine", "num_images": 1},
    "inpaint": {"steps": 16, "guidance": 1.75, "temperature": 1.0, "schedule": "cosine", "num_images": 1},
    "extrapolate": {"steps": 16, "guidance": 1.75, "temperature": 1.0, "schedule": "cosine", "num_images": 1,
                    "offset": 0},
    "ask": {"max_new_tokens": 100, "temperature": 0.0},
    "caption": {"max_new_tokens": 100, "temperature": 0.0},
    "write": {"max_new_tokens": 100, "temperature": 0.0},
    "mixed": {"steps": 16, "guidance": 0.0, "temperature": 0.0, "image_temperature": 1.0, "max_images": 4,
              "max_new_tokens": 200},
}


class UsageError(ShowoError):
    """A command-line usage problem (unknown option, bad value); reported like every other user error."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`showo: error: ...`, exit code 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        text = " ".join(str(message).split())
        raise UsageError(f"{text} (see '{self.prog} --help')")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, with unknown options pointed at the help of the subcommand they were given to, and at
        the option meant when the name is close to one (or is the Python API's name for it)."""
        try:
            parsed, extras = self.parse_known_args(args, namespace)
        except UsageError:
            # argparse stops at a missing required option before it reports unknown ones; when an unknown one is
            # a near miss of an option (`showo eval --sampels 3`), the typo is the news, not the missing option
            command, extras = self._unknown_options(args)
            if not self._meant(command, extras):
                raise
        else:
            command = getattr(parsed, "command", None)
            if not extras:
                return parsed
        prog = f"{self.prog} {command}" if command else self.prog
        raise UsageError(f"unrecognized arguments: {' '.join(extras)}{self._meant(command, extras)} "
                         f"(see '{prog} --help')")

    def _commands(self) -> dict[str, argparse.ArgumentParser]:
        return self._subparsers._group_actions[0].choices if self._subparsers else {}

    def _options(self, command: str | None) -> list[str]:
        """The option strings of the subcommand's parser (this one's when there is none)."""
        return [o for a in self._commands().get(command, self)._actions for o in a.option_strings]

    def _unknown_options(self, args: list[str] | None) -> tuple[str | None, list[str]]:
        """The subcommand named in `args` and the `--options` in them it does not know."""
        import sys

        args = sys.argv[1:] if args is None else list(args)
        command = next((a for a in args if a in self._commands()), None)
        known = set(self._options(command))
        return command, [a for a in args if a.startswith("--") and a.split("=", 1)[0] not in known]

    def _meant(self, command: str | None, extras: list[str]) -> str:
        """'; did you mean --steps?' for the first unknown option that resembles one of `command`'s."""
        import difflib

        known = [o for o in self._options(command) if o.startswith("--")]
        for extra in (e.split("=", 1)[0] for e in extras if e.startswith("--")):
            meant = next((o for o in API_NAMES.get(extra, ()) if o in known), None)
            meant = meant or next(iter(difflib.get_close_matches(extra, known, n=1, cutoff=0.75)), None)
            if meant:
                return f"; did you mean {meant}?"
        return ""


def _default_model_help() -> str:
    from .models import DEFAULT_MODEL, TINY_RANDOM

    if DEFAULT_MODEL == TINY_RANDOM:
        return "Default: tiny-random"
    return f"Default: '{DEFAULT_MODEL}', the small model trained on the procedural world, shipped in the package"


# ---- option groups ---------------------------------------------------------------------------------------------

def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="PATH|ID",
                   help="a pipeline directory (from save_pretrained), an official checkpoint directory or a "
                        "hub id such as showlab/show-o; 'tiny-random' is a tiny randomly initialised model "
                        "(noise images, gibberish text) for trying the tool. " + _default_model_help())
    g.add_argument("--vq", metavar="PATH|ID", type=path_arg,
                   help="MAGVIT-v2 image tokenizer (default: the pipeline directory's, else showlab/magvitv2)")
    g.add_argument("--tokenizer", metavar="PATH|ID", type=path_arg,
                   help="text tokenizer (default: the pipeline directory's, else microsoft/phi-1_5)")
    g.add_argument("--clip", metavar="PATH|ID", type=path_arg,
                   help="CLIP-ViT tower, needed by the w_clip_vit checkpoints")
    g.add_argument("--device", type=device_name, default="auto", metavar="DEVICE",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps (default: auto)")
    g.add_argument("--dtype", choices=DTYPES, default="float32", type=lambda v: DTYPE_ALIASES.get(v, v),
                   help="weights/activations precision of the transformer (bf16, fp16 and fp32 also read; "
                        "default: float32; the image tokenizer always runs in float32)")
    g.add_argument("--pack-weights", action="store_true",
                   help="float32 on the CPU only: lay the weights out for oneDNN once at load time: batches "
                        "of questions or captions run faster (1.36-1.47x for 8 at full size); for a single "
                        "one, from no gain to 1.16x depending on the CPU")


def _add_output_options(p: argparse.ArgumentParser, command: str) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", default=f"out/{command}", type=path_arg,
                   help=f"directory for the results; created if needed, files of the same name replaced "
                        f"(default: out/{command})")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no summary line on stderr")


def add_image_sampling(g: argparse._ArgumentGroup, d: dict[str, object], temperature_flag: str = "--temperature",
                       ) -> None:
    """--steps, --guidance and the image temperature (`temperature_flag`), with defaults `d` (a `DEFAULTS` entry,
    or `showo eval`'s settings)."""
    g.add_argument("--steps", type=steps_count, default=d["steps"], metavar="N",
                   help="MaskGIT decoding steps per image (default: %(default)s)")
    g.add_argument("--guidance", type=scale, default=d["guidance"], metavar="G",
                   help="classifier-free guidance scale, (1+G)*cond - G*uncond; 0 disables it (default: %(default)s)")
    temperature = d["image_temperature"] if "image_temperature" in d else d["temperature"]
    g.add_argument(temperature_flag, type=scale, default=temperature,
                   metavar="T", dest="image_temperature" if temperature_flag != "--temperature" else "temperature",
                   help="temperature of the confidence-based re-masking (default: %(default)s)")


def _add_mask_options(g: argparse._ArgumentGroup, command: str) -> None:
    g.add_argument("--schedule", default=DEFAULTS[command]["schedule"], metavar="NAME",
                   help="mask schedule: cosine, linear, sigmoid or powK such as pow2 (default: %(default)s)")
    g.add_argument("--exact", action="store_true",
                   help="recompute the prompt at every step like the official code (same images, slower)")


def _add_text_sampling(g: argparse._ArgumentGroup, command: str, with_temperature: bool = True) -> None:
    """Length and sampling of generated text; for the commands that decode with `generate_text` (not mixed,
    whose text and images take turns), also --compile-decoding."""
    d = DEFAULTS[command]
    g.add_argument("--max-new-tokens", type=positive_int, default=d["max_new_tokens"], metavar="N",
                   help="stop after N generated tokens (default: %(default)s)")
    if with_temperature:
        g.add_argument("--temperature", type=text_temperature, default=d["temperature"], metavar="T",
                       help="sampling temperature; 0 = greedy (default: %(default)s)")
    g.add_argument("--top-k", type=positive_int, metavar="K", help="sample among the K most likely tokens only")
    g.add_argument("--top-p", type=probability, metavar="P", help="nucleus sampling: the smallest set of tokens "
                                                                  "with probability mass >= P")
    g.add_argument("--stream", action="store_true",
                   help="print the text as it is generated (with several answers: each one when it is done)")
    if command != "mixed":
        g.add_argument("--compile-decoding", action="store_true",
                       help="compile the decoding step with torch.compile (answers of --max-new-tokens 5 or more): "
                            "the first answer waits for the compile "
                            "(about 35 s at full size on an H200), later tokens are faster (1.34-1.44x the "
                            "default decoding there)")


def _add_seed(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--seed", type=non_negative_int, metavar="S",
                   help="random seed; without one a seed is drawn and recorded in the outputs, so every run "
                        "can be reproduced")


def _add_ignored_image_options(p: argparse.ArgumentParser) -> None:
    """--steps/--guidance accepted (hidden) on text commands so that scripts can pass the same options to every
    subcommand; the command warns that they have no effect."""
    p.add_argument("--steps", type=positive_int, help=argparse.SUPPRESS)
    p.add_argument("--guidance", type=non_negative_float, help=argparse.SUPPRESS)


# ---- help texts ------------------------------------------------------------------------------------------------

MAIN_DESCRIPTION = """\
Show-o (v1) from the command line: one transformer that creates images (text-to-image, inpainting,
extrapolation) and understands them (questions, captions), and also writes text. Each subcommand validates all
of its inputs before loading the model and writes nothing unless it succeeds (train and finetune fill their
run directory as they go, and resume it). Every image is saved as PNG with
a JSON file of the same name holding the prompt, seed and every parameter needed to reproduce it; text answers
are printed and saved to answers.json."""

MAIN_EPILOG = """\
examples:
  showo generate "a red apple on a wooden table" --seed 0
  showo inpaint photo.png mask.png "a green ball"
  showo extrapolate photo.png "more forest" --direction left
  showo ask photo.png "What is on the table?" "What colour is it?"
  showo caption photos/
  showo write "Once upon a time" --stream
  showo mixed "Explain how to bake bread, with pictures."
  showo finetune my-data.jsonl --run runs/mine   # then any command with --model runs/mine/model
  showo serve --port 8000                        # every task over HTTP: POST /v1/<task> with JSON

The examples suit an official checkpoint (--model). The embedded default knows only its procedural world's
words: "a small red circle on the left", "What colour is the square?" (grammar: docs/world.md in the repository).

Run 'showo COMMAND --help' for the options of a command. User errors print one line 'showo: error: ...' on
stderr and exit with code 2."""

COMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": (
        "create images from text prompts",
        """\
Create images from one or more text prompts with MaskGIT decoding. All prompts run as one batch; with the same
--seed and options the images are identical, byte for byte, to a previous run and to the Python API
(ShowoPipeline.text_to_image). Writes one PNG + JSON per image and an index.html gallery.""",
        """\
examples:
  showo generate "a red apple on a wooden table"
  showo generate "a cat" "a dog" --images-per-prompt 4 --seed 7 --out out/pets
  showo generate "a lighthouse at dusk" --steps 32 --guidance 3 --schedule linear""",
    ),
    "inpaint": (
        "regenerate the white part of a mask following a prompt",
        """\
Regenerate the white part of MASK inside IMAGE following PROMPT; the image tokens outside the mask are kept
exactly. The mask is resized (with a warning) if its size differs from the image's; an all-black mask is an
error and an all-white one is plain text-to-image (warned).""",
        """\
examples:
  showo inpaint photo.png mask.png "a green ball on the grass"
  showo inpaint photo.png mask.png "a wooden door" -n 4 --seed 1""",
    ),
    "extrapolate": (
        "extend an image beyond its borders",
        """\
Extend IMAGE beyond one of its borders, one PROMPT per extension step: each prompt describes the new strip
and --direction says where it goes (one direction for all prompts, or one per prompt, in order).""",
        """\
examples:
  showo extrapolate photo.png "more forest" --direction left
  showo extrapolate photo.png "a river" "a bridge" --direction right right --offset 2""",
    ),
    "ask": (
        "answer questions about images",
        """\
Answer every QUESTION about IMAGE (greedy decoding by default, as the official demo). IMAGE may be a
directory: every image file in it (sorted by name, not recursive). --image adds more images; every question is
asked about every image, in one batch (with --pairwise, question i about image i only). Answers are printed
(labelled when there are several) and saved to answers.json.""",
        """\
examples:
  showo ask photo.png "What is on the table?"
  showo ask photo.png "How many people?" "What is the weather?" --image other.jpg
  showo ask photo.png "How many people?" "Is it raining?" --image other.jpg --pairwise
  showo ask photos/ "Is there a dog?" --stream""",
    ),
    "caption": (
        "describe images",
        """\
Describe each IMAGE (files or directories of images) with the captioning question, printed and saved to
answers.json.""",
        """\
examples:
  showo caption photo.png
  showo caption photos/ more.jpg --max-new-tokens 60""",
    ),
    "write": (
        "continue a text prompt",
        """\
Continue PROMPT as a language model (causal attention, no image). The continuation is printed (streamed with
--stream) and saved to answers.json.""",
        """\
examples:
  showo write "Once upon a time" --stream
  showo write "The recipe:" --temperature 0.8 --top-k 40 --seed 3""",
    ),
    "mixed": (
        "answer with interleaved text and images",
        """\
Answer PROMPT with text interleaved with generated images. Writes each image as PNG + JSON, the whole answer
as answer.md and index.html, and the text to answers.json.""",
        """\
examples:
  showo mixed "Explain how to bake bread, with pictures."
  showo mixed "Describe three kinds of clouds." --max-images 3 --force-image-every-sentence""",
    ),
}


def _subparser(sub, name: str) -> argparse.ArgumentParser:
    short, description, epilog = COMMANDS[name]
    return sub.add_parser(name, help=short, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> Parser:
    """The whole `showo` parser (subcommand name in `args.command`)."""
    parser = Parser(prog=PROG, description=MAIN_DESCRIPTION, epilog=MAIN_EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    p = _subparser(sub, "generate")
    p.add_argument("prompts", nargs="+", metavar="PROMPT", help="text prompt (quote each one)")
    g = p.add_argument_group("sampling")
    _add_seed(g)
    add_image_sampling(g, DEFAULTS["generate"])
    _add_mask_options(g, "generate")
    g.add_argument("-n", "--images-per-prompt", dest="num_images", type=image_count, default=1, metavar="N",
                   help="images per prompt (default: %(default)s)")

    p = _subparser(sub, "inpaint")
    p.add_argument("image", metavar="IMAGE", type=path_arg,
                   help="the picture to edit (any mode: grayscale, RGBA, palette...)")
    p.add_argument("mask", metavar="MASK", type=path_arg, help="white = regenerate, black = keep")
    p.add_argument("prompt", metavar="PROMPT", help="what to paint in the white area")
    g = p.add_argument_group("sampling")
    _add_seed(g)
    add_image_sampling(g, DEFAULTS["inpaint"])
    _add_mask_options(g, "inpaint")
    g.add_argument("-n", "--num-images", type=image_count, default=1, metavar="N",
                   help="variants to generate (default: %(default)s)")

    p = _subparser(sub, "extrapolate")
    p.add_argument("image", metavar="IMAGE", type=path_arg, help="the picture to extend")
    p.add_argument("prompts", nargs="+", metavar="PROMPT", help="one prompt per extension step")
    g = p.add_argument_group("extrapolation")
    g.add_argument("--direction", nargs="+", action="extend", required=True, metavar="D",
                   help="left, right, up or down: one for all prompts or one per prompt")
    g.add_argument("--offset", type=non_negative_int, default=DEFAULTS["extrapolate"]["offset"], metavar="N",
                   help="each step adds grid/2 + N token columns (left/right) or rows (up/down), so a larger N "
                        "extends further with less overlap; N < grid/2 (default: %(default)s)")
    g = p.add_argument_group("sampling")
    _add_seed(g)
    add_image_sampling(g, DEFAULTS["extrapolate"])
    _add_mask_options(g, "extrapolate")
    g.add_argument("-n", "--num-images", type=image_count, default=1, metavar="N",
                   help="variants to generate (default: %(default)s)")

    p = _subparser(sub, "ask")
    p.add_argument("image", metavar="IMAGE", type=path_arg, help="an image file or a directory of images")
    p.add_argument("questions", nargs="+", metavar="QUESTION", help="question about the image(s) (quote each one)")
    p.add_argument("--image", dest="more_images", action="append", default=[], metavar="IMAGE", type=path_arg,
                   help="another image or directory (repeatable)")
    p.add_argument("--pairwise", action="store_true",
                   help="ask question i about image i only (as many questions as images), not every question about "
                        "every image")
    g = p.add_argument_group("sampling")
    _add_seed(g)
    _add_text_sampling(g, "ask")
    _add_ignored_image_options(p)

    p = _subparser(sub, "caption")
    p.add_argument("images", nargs="+", metavar="IMAGE", type=path_arg, help="image files or directories of images")
    p.add_argument("--question", metavar="TEXT", help="the captioning question (default: the pipeline's, "
                                                      "'Describe the image.')")
    g = p.add_argument_group("sampling")
    _add_seed(g)
    _add_text_sampling(g, "caption")
    _add_ignored_image_options(p)

    p = _subparser(sub, "write")
    p.add_argument("prompt", metavar="PROMPT", help="the text to continue (quote it)")
    g = p.add_argument_group("sampling")
    _add_seed(g)
    _add_text_sampling(g, "write")
    _add_ignored_image_options(p)

    p = _subparser(sub, "mixed")
    p.add_argument("prompt", metavar="PROMPT", help="the request (quote it)")
    g = p.add_argument_group("text sampling")
    _add_seed(g)
    _add_text_sampling(g, "mixed")
    g = p.add_argument_group("images")
    add_image_sampling(g, DEFAULTS["mixed"], temperature_flag="--image-temperature")
    g.add_argument("--max-images", type=non_negative_int, default=DEFAULTS["mixed"]["max_images"], metavar="N",
                   help="at most N images in the answer; 0 writes text only and stops where an image would start "
                        "(default: %(default)s)")
    g.add_argument("--force-image-every-sentence", action="store_true",
                   help="insert an image after every sentence (up to --max-images)")

    for name in COMMANDS:
        _add_model_options(sub.choices[name])
        _add_output_options(sub.choices[name], name)
    from . import bench, evaluate, finetune, serve, train

    evaluate.add_parser(sub, _add_model_options, _add_output_options)
    finetune.add_parser(sub, _add_model_options)
    serve.add_parser(sub, _add_model_options)
    train.add_parser(sub, Parser)
    bench.add_parser(sub)
    return parser


def version() -> str:
    """The installed package version ('unknown' when running from a source tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version as _version

    try:
        return _version("showo")
    except PackageNotFoundError:
        return "unknown"
