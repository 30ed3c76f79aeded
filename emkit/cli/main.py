"""The ``emkit`` command line: a thin layer over the library's functions.

Each command lives in its own module under :mod:`emkit.cli` and exposes two
functions: ``add_parser(subparsers)``, which registers the command and sets
``func`` on its parser, and ``run(args)``, which returns an exit status.
Commands import their heavy dependencies (TensorFlow, MLflow) inside ``run``
so that ``emkit evaluate`` starts in about a second.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading

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
    "view": "emkit.cli.view",
}


# Commands (and actions) that load Keras: TensorFlow's start-up log lines are kept off
# stderr unless --verbose (see _import_keras_quietly).
KERAS_COMMANDS = {"predict", "recipe", "ensemble", "tune", "align", "model", "augment"}
LIGHT_ACTIONS = {("recipe", "list"), ("recipe", "show"), ("augment", "list"), ("model", "list")}


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"emkit: error: {self.prog}: {' '.join(message.split())} "
                     f"(see {self.prog} --help)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="emkit",
        description="Deep-learning segmentation of neural tissue in EM stacks.",
    )
    parser.add_argument("--version", action="version", version=f"emkit {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="also show the log lines of TensorFlow and other libraries on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    action = next((v for k, v in vars(args).items()
                   if k == "action" or k.endswith("_command")), None)
    if not args.verbose:  # MLflow's INFO lines (a new store's tables, ...): MLflow sets
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its level on import
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if (args.command in KERAS_COMMANDS and (args.command, action) not in LIGHT_ACTIONS
                and not args.verbose and not getattr(args, "blockwise", False)):
            # (--blockwise: the Dask workers load the model; this process stays light)
            _import_keras_quietly()
        with _sigterm_interrupts():
            return int(args.func(args) or 0)
    except EmkitError as exc:
        print(f"emkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emkit: interrupted", file=sys.stderr)
        return 130


def _import_keras_quietly() -> None:
    """Imports Keras (and TensorFlow) with the process's stderr sent to a temporary file.

    TensorFlow writes its start-up lines (oneDNN, absl) from C++ before its log level
    applies; they would come before emkit's own words. If the import fails, what it
    wrote is shown after all.
    """
    import tempfile

    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras  # noqa: F401
        except BaseException:
            sink.seek(0)
            os.write(saved, sink.read())  # the real stderr
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a job scheduler's stop, ``kill``) acts as Ctrl-C: training saves a last
    checkpoint and ends its run as KILLED; outputs being written are removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        """The SIGTERM handler: raises KeyboardInterrupt.

        Args:
            signum: the signal number (SIGTERM).
            frame: the interrupted stack frame (unused).
        """
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
