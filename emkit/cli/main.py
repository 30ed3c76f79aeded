"""The ``emkit`` command line: a thin layer over the library's functions.

Each command lives in its own module under :mod:`emkit.cli` and exposes two
functions: ``add_parser(subparsers)``, which registers the command and sets
``func`` on its parser, and ``run(args)``, which returns an exit status.
Commands import their heavy dependencies (TensorFlow, MLflow) inside ``run``
so that ``emkit evaluate`` starts in about a second.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from emkit import __version__
from emkit.errors import EmkitError

# Command name -> module under emkit.cli. A plain, static list.
COMMANDS = {
    "evaluate": "emkit.cli.evaluate",
    "data": "emkit.cli.data",
    "model": "emkit.cli.model",
    "segment": "emkit.cli.segment",
    "export": "emkit.cli.export",
    "augment": "emkit.cli.augment",
    "predict": "emkit.cli.predict",
    "recipe": "emkit.cli.recipe",
    "ui": "emkit.cli.ui",
    "ensemble": "emkit.cli.ensemble",
    "tune": "emkit.cli.tune",
    "align": "emkit.cli.align",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emkit",
        description="Deep-learning segmentation of neural tissue in EM stacks.",
    )
    parser.add_argument("--version", action="version", version=f"emkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EmkitError as exc:
        print(f"emkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
