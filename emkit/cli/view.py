"""``emkit view SPEC ...``: volumes in neuroglancer, served from local files on 127.0.0.1.

    emkit view raw.h5:raw pred.zarr:affs seg.zarr:seg [--port N]

A thin layer over :func:`emkit.view.plan_layers` and :func:`emkit.view.serve`. The URL is
printed once the server answers; Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import sys
import time

from emkit.cli.arguments import add_command
from emkit.errors import InputError

DESCRIPTION = """\
Show volumes in neuroglancer: a viewer served from this machine on 127.0.0.1, reading
the files lazily (only the chunks on screen are read, so a Zarr or HDF5 volume larger
than memory is fine). The URL is printed once the server answers; open it in a browser
(from another machine: ssh -L PORT:127.0.0.1:PORT this-host, and --port PORT). No browser
is opened. Ctrl-C or SIGTERM stops the server.

Each SPEC is one layer, its kind read from its shape and dtype:
  (z, y, x), uint8/uint16/float  image: EM images, boundary maps (grey)
  (z, y, x), 32/64-bit integers  segmentation: label ids, a colour each, 0 transparent
  (c, z, y, x), float or uint8   affinities, channels first as emkit writes them (c >= 2):
                                 channels 0, 1, 2 (offsets z, y, x) as red, green, blue
--image, --segmentation and --affinities name a volume's kind instead (e.g. uint16
labels, or uint32 images). The voxel size and offset come from the files
(resolution/offset attributes, nm, z y x); a volume without one takes the voxel size of a
layer of the same (z, y, x) shape. Layers are named by their key's last part (or the
file's stem).

Paths: file.h5:key, store.zarr:key, stack.tif, file.npy, a folder of PNG sections.
Exit status 2 on bad input; 130 when stopped.
"""

EPILOG = """\
examples:
  emkit view raw.h5:raw pred.zarr:affs seg.zarr:seg
  emkit view runs/isbi_n4-<time>/outputs/validation.h5:raw \\
      runs/isbi_n4-<time>/outputs/validation.h5:pred runs/isbi_n4-<time>/outputs/validation.h5:seg
  emkit view sample_A.hdf:volumes/raw --segmentation sample_A.hdf:volumes/labels/neuron_ids --port 8080
"""


class _AddLayers(argparse.Action):
    """Appends ``(kind, spec)`` pairs to ``args.layers``, in the order given."""

    def __call__(self, parser, namespace, values, option_string=None):
        values = values if isinstance(values, list) else [values]
        namespace.layers = list(getattr(namespace, "layers", None) or []) + [
            (self.const, v) for v in values]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "view",
                         help="show volumes in neuroglancer, served on 127.0.0.1",
                         description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("layers", nargs="*", metavar="SPEC", action=_AddLayers, const=None,
                        default=None, help="a volume; its kind is read from its shape and "
                        "dtype (see above)")
    for kind, what in (("image", "grey values"), ("segmentation", "label ids"),
                       ("affinities", "(c, z, y, x), channels 0-2 as RGB")):
        parser.add_argument(f"--{kind}", dest="layers", action=_AddLayers, const=kind,
                            metavar="SPEC", help=f"a volume shown as {kind} ({what}); "
                            "may be given more than once")
    parser.add_argument("--port", type=int, default=0,
                        help="port on 127.0.0.1 (default: 0, a free port chosen by the "
                             "system)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from emkit.view import plan_layers, serve

    if not 0 <= args.port < 65536:
        raise InputError(f"--port: expected a port in 0-65535 (0: any free port), "
                         f"got {args.port}")
    layers = plan_layers(args.layers or [])
    for layer in layers:
        if layer.note:
            print(f"note: {layer.note}", file=sys.stderr)
    with serve(layers, port=args.port) as viewer:
        print(f"neuroglancer: {viewer.get_viewer_url()}", flush=True)
        width = max(len(layer.name) for layer in layers)
        for layer in layers:
            print(f"  {layer.describe(width)}")
        print("  Ctrl-C stops the server", flush=True)
        while True:  # until Ctrl-C, or SIGTERM (emkit.cli.main makes it a Ctrl-C)
            time.sleep(3600)
