"""Argument types shared by the commands: a bad value is argparse's one-line usage error,
naming the option (``emkit: error: emkit tune watershed: argument --n-trials: ...``)."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int):
    """An argparse ``type`` that reads an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an int >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def add_command(subparsers, name: str, *, help: str, description: str,
                epilog: str | None = None, **kwargs) -> argparse.ArgumentParser:
    """A subcommand's parser, formatted alike for every command.

    A description or epilog written with line breaks (examples, tables) is printed as
    written; a one-paragraph description is wrapped to the terminal.

    Args:
        subparsers: what ``add_subparsers()`` returned.
        name: the command's name.
        help: one line for the parent's command list.
        description: the text at the top of ``--help``.
        epilog: the text at the end of ``--help`` (e.g. examples), or None.
        **kwargs: other :meth:`argparse._SubParsersAction.add_parser` arguments.
    """
    if "\n" in description or "\n" in (epilog or ""):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    return subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                 **kwargs)
