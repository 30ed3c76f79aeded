"""``emkit model list`` and ``emkit model show``."""

import argparse

import pytest

from emkit.cli import model as model_command
from emkit.errors import InputError
from emkit.models.architectures import ARCHITECTURES


def _run(argv):
    parser = argparse.ArgumentParser(prog="emkit")
    model_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_list_prints_every_architecture_with_its_fov(capsys):
    assert _run(["model", "list"]) == 0
    out = capsys.readouterr().out
    for name in ARCHITECTURES:
        assert f"\n{name} " in out
    n4_line = next(line for line in out.splitlines() if line.startswith("n4 "))
    assert "95x95 -> 1x1" in n4_line and "95x95 " in n4_line.split("->")[1]
    assert "572x572 -> 388x388" in out


def test_show_prints_layers_parameters_fov_and_shapes(capsys):
    assert _run(["model", "show", "n4", "--input-shape", "111", "127"]) == 0
    out = capsys.readouterr().out
    assert "block5_conv1" in out and "pool4" in out and "boundaries" in out
    assert "parameters:     219,089" in out
    assert "input shape:    111x127 x 1 channel(s)" in out
    assert "output shape:   2x3 x 1 channel(s)" in out
    assert "field of view:  95x95" in out
    assert "output stride:  16x16" in out


def test_show_takes_overrides(capsys):
    assert (
        _run(
            [
                "model",
                "show",
                "vd2d3d",
                "--input-shape",
                "5,85,85",
                "width_factor=0.1",
                "out_channels=12",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "output shape:   1x1x1 x 12 channel(s)" in out
    assert "field of view:  5x85x85" in out


def test_show_reports_bad_input_as_an_input_error():
    with pytest.raises(InputError, match=r"nearest valid sizes on that axis: 95 or 111"):
        _run(["model", "show", "n4", "--input-shape", "100", "95"])
    with pytest.raises(InputError, match=r"architecture: unknown name 'n5'"):
        _run(["model", "show", "n5"])
    with pytest.raises(InputError, match=r"override: expected KEY=VALUE, got 'residual'"):
        _run(["model", "show", "n4", "residual"])


def test_model_without_an_action_prints_help(capsys):
    assert _run(["model"]) == 2
    assert "list" in capsys.readouterr().out
