"""``emkit export FORMAT INPUT OUTPUT``: write a challenge submission file."""

from __future__ import annotations

import argparse
import sys

from emkit.cli.arguments import add_command
from emkit.errors import InputError

DESCRIPTION = """\
Write a prediction in a challenge's submission format.

FORMAT:
  isbi2012  INPUT is a boundary map (z, y, x), 1 = boundary (float in [0, 1], uint8 read
            as value / 255), or affinities (c, z, y, x) stored channels first, turned into
            a boundary map as 1 - the mean of the in-plane channels (offsets (0,1,0) and
            (0,0,1)). OUTPUT is a 32-bit float TIFF stack in the challenge's convention,
            1 = cell interior (non-membrane), 0 = membrane: the boundary map is INVERTED.
            Pass --invert if INPUT already stores 1 = interior (it is then written as is).
  snemi3d   INPUT is a segmentation (integer labels). OUTPUT is a uint32 TIFF stack of
            labels (ids renumbered only if they do not fit in uint32); 0 stays 0.
  cremi     INPUT is a segmentation. OUTPUT is an HDF5 file with
            volumes/labels/neuron_ids (uint64) and, with --raw, volumes/raw (uint8), each
            with `resolution` and `offset` attributes in nm (z, y, x). The resolution is
            --voxel-size, else INPUT's voxel size, else CREMI's 40,4,4.

Paths: file.tif, file.h5:key, store.zarr:key, file.npy. Exit status 0 on success, 2 on
bad input.
"""

EPILOG = """\
examples:
  emkit export isbi2012 pred.h5:volumes/boundaries isbi_submission.tif
  emkit export snemi3d seg.h5:volumes/labels/neuron_ids snemi_submission.tif
  emkit export cremi seg.h5:volumes/labels/neuron_ids sample_A+.hdf --raw raw.h5:volumes/raw
"""


FORMATS = ("isbi2012", "snemi3d", "cremi")  # emkit.export.FORMATS (checked by a test)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "export",
                         help="write an ISBI 2012, SNEMI3D or CREMI submission file",
                         description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("format", metavar="FORMAT", choices=FORMATS,
                        help=f"one of {', '.join(FORMATS)}")
    parser.add_argument("input", metavar="INPUT", help="boundary map, affinities or labels")
    parser.add_argument("output", metavar="OUTPUT", help="the file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--invert", action="store_true",
                        help="isbi2012: INPUT already stores 1 = interior; write it as is")
    parser.add_argument("--raw", metavar="RAW", help="cremi: also store this uint8 EM volume")
    parser.add_argument("--voxel-size", metavar="Z,Y,X",
                        help="cremi: voxel size in nm (default: INPUT's, else 40,4,4)")
    parser.add_argument("--offset", metavar="Z,Y,X",
                        help="cremi: offset in nm (default: INPUT's, else 0,0,0)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from emkit import export
    from emkit.cli.segment import parse_floats, read_probabilities
    from emkit.io import open_volume

    volume = open_volume(args.input)
    if args.format == "isbi2012":
        if volume.ndim == 4:
            from emkit.postprocess.options import check_stored_affinities
            from emkit.targets import affinities_to_boundaries

            check_stored_affinities(volume.shape, f"INPUT '{volume.spec}'")
            affs = np.moveaxis(read_probabilities(volume, "INPUT"), 0, -1)
            boundaries = affinities_to_boundaries(affs)
        else:
            _require_3d(volume)
            boundaries = read_probabilities(volume, "INPUT")
        if args.invert:
            boundaries = 1 - boundaries
        path = export.export_isbi2012(args.output, boundaries, overwrite=args.overwrite)
    elif args.format == "snemi3d":
        path = export.export_snemi3d(args.output, _labels(volume), overwrite=args.overwrite)
    else:
        voxel_size = (
            parse_floats(args.voxel_size, "--voxel-size", 3) if args.voxel_size
            else volume.voxel_size_nm or export.CREMI_RESOLUTION_NM
        )
        offset = (
            parse_floats(args.offset, "--offset", 3) if args.offset
            else volume.offset_nm or (0.0, 0.0, 0.0)
        )
        raw = None
        if args.raw:
            raw_volume = open_volume(args.raw)
            _require_3d(raw_volume)
            raw = np.asarray(raw_volume[...])
        path = export.export_cremi(
            args.output, _labels(volume), voxel_size_nm=voxel_size, offset_nm=offset,
            raw=raw, overwrite=args.overwrite,
        )
    print(f"wrote {path} ({args.format})", file=sys.stderr)
    return 0


def _require_3d(volume):
    if volume.ndim != 3:
        raise InputError(
            f"'{volume.spec}' has shape {volume.shape}: expected a (z, y, x) volume"
        )


def _labels(volume):
    import numpy as np

    _require_3d(volume)
    if volume.dtype.kind not in "iub":
        raise InputError(
            f"INPUT '{volume.spec}' has dtype {volume.dtype}: a segmentation must hold "
            "integer labels"
        )
    return np.asarray(volume[...])
