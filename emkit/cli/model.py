"""``emkit model``: list the registered architectures and show one in detail.

emkit model list
emkit model show n4
emkit model show rsunet --input-shape 18 160 160 out_channels=12
"""

from __future__ import annotations

import argparse

from emkit.cli.arguments import add_command
from emkit.errors import InputError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "model",
                         help="list the registered network architectures, or show one's layers "
                              "and shapes",
                         description="List the registered network architectures, or build one "
                                     "and show its layers, parameter count, field of view and "
                                     "input and output shapes.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    add_command(actions, "list",
                help="print the registered architectures with their field of view and default "
                     "shapes",
                description="Print the registered architectures with their field of view and "
                            "default shapes.")
    show = add_command(actions, "show",
                       help="build an architecture and print its layers, parameters, FOV and "
                            "shapes",
                       description="Build a registered architecture and print its layers, "
                                   "parameter count, field of view, output stride, input and "
                                   "output shapes and the nearby valid input sizes.")
    show.add_argument("name", help="a registered architecture (see `emkit model list`)")
    show.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="spec keys to override, YAML values (e.g. out_channels=3 residual=true)",
    )
    show.add_argument(
        "--input-shape",
        nargs="+",
        metavar="N",
        help=(
            "spatial input size, (y, x) or (z, y, x), e.g. --input-shape 111 111 or "
            "18,160,160 (KEY=VALUE words after it are still overrides)"
        ),
    )
    parser.set_defaults(func=run, parser=parser)
    return parser


def run(args) -> int:
    if args.action == "list":
        return _list()
    if args.action == "show":
        return _show(args)
    args.parser.print_help()
    return 2


def _list() -> int:
    from emkit.models import shapes
    from emkit.models.architectures import ARCHITECTURES, DESCRIPTIONS

    rows = [("name", "family", "dims", "out", "input -> output", "fov", "description")]
    for name, spec in ARCHITECTURES.items():
        geometry = shapes.geometry(spec)
        rows.append(
            (
                name,
                spec.family,
                f"{spec.ndim}D",
                str(spec.out_channels),
                f"{_fmt(geometry.input_shape)} -> {_fmt(geometry.output_shape)}",
                _fmt(geometry.fov),
                DESCRIPTIONS[name],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _show(args) -> int:
    import yaml

    from emkit.models import shapes
    from emkit.models.architectures import build_model, get_spec

    shape_words = [w for w in args.input_shape or [] if "=" not in w]
    overrides = {}
    for item in [*args.overrides, *(w for w in args.input_shape or [] if "=" in w)]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"override: expected KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    if shape_words:
        overrides["input_shape"] = _parse_shape(shape_words)
    spec = get_spec(args.name, **overrides)
    model = build_model(spec)
    geometry = shapes.model_geometry(model, spec.input_shape)
    _print_layers(model)
    print(f"architecture:   {args.name} ({spec.family}, {spec.ndim}D)")
    print(f"parameters:     {model.count_params():,}")
    print(f"input shape:    {_fmt(geometry.input_shape)} x {geometry.in_channels} channel(s)")
    print(f"output shape:   {_fmt(geometry.output_shape)} x {geometry.out_channels} channel(s)")
    print(f"field of view:  {_fmt(geometry.fov)}")
    print(f"output stride:  {_fmt(geometry.output_stride)}")
    print(f"context:        {_fmt(geometry.context)}")
    for axis, n in enumerate(geometry.input_shape):
        sizes = shapes.valid_input_sizes(spec, axis, n + 200, start=max(1, n - 100))
        shown = ", ".join(str(s) for s in sizes[:12])
        print(f"valid sizes, axis {axis}: {shown}{', ...' if len(sizes) > 12 else ''}")
    return 0


def _print_layers(model) -> None:
    """One line per layer: name, type, output shape, parameters."""
    rows = [("layer", "type", "output shape", "params")]
    for layer in model.layers:
        shape = layer.output.shape
        rows.append(
            (
                layer.name,
                type(layer).__name__,
                "(" + ", ".join("None" if v is None else str(v) for v in shape) + ")",
                f"{layer.count_params():,}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(f"model {model.name!r}")
    for row in rows:
        print(
            "  "
            + "  ".join(
                cell.rjust(w) if i == 3 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
        )


def _parse_shape(values: list[str]) -> tuple[int, ...]:
    parts = [p for v in values for p in v.replace("x", ",").split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(
            f"--input-shape: expected ints such as 95 95 or 18,160,160, got {values}"
        ) from None


def _fmt(shape) -> str:
    return "x".join("global" if v is None else str(v) for v in shape)
