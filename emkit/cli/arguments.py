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
