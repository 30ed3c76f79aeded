"""Tests for ``emkit segment``: files in, files out, exit codes and messages."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile

from emkit.cli import segment as segment_cli
from emkit.cli.main import main


@pytest.fixture
def affs_file(tmp_path):
    """Channels-first affinities of two 2x4x4 halves split by a weak plane, and the path."""
    affs = np.full((3, 2, 4, 8), 0.9, np.float32)
    affs[2, :, :, 4] = 0.1  # channel x: edges between x = 3 and x = 4
    path = tmp_path / "pred.h5"
    with h5py.File(path, "w") as f:
        f["affs"] = affs
        f["affs"].attrs["resolution"] = [40.0, 4.0, 4.0]
        f["affs8"] = (affs * 255).round().astype(np.uint8)
        f["two_channels"] = affs[:2]
        f["channels_last"] = np.moveaxis(affs, 0, -1)[:2]
        f["out_of_range"] = affs * 2
    return path


def read(spec):
    path, key = spec.split(":")
    with h5py.File(path, "r") as f:
        return f[key][()], dict(f[key].attrs)


def test_segments_channels_first_affinities(affs_file, capsys):
    out = f"{affs_file.parent}/seg.h5:seg"
    assert main(["segment", f"{affs_file}:affs", "--output", out]) == 0
    seg, attrs = read(out)
    assert seg.dtype == np.uint64 and seg.shape == (2, 4, 8)
    assert (seg[..., :4] == 1).all() and (seg[..., 4:] == 2).all()
    assert attrs["resolution"].tolist() == [40.0, 4.0, 4.0]  # copied from INPUT
    assert "2 segments" in capsys.readouterr().err


def test_uint8_affinities_are_read_as_probabilities(affs_file):
    out = f"{affs_file.parent}/seg.h5:seg8"
    assert main(["segment", f"{affs_file}:affs8", "--output", out]) == 0
    assert read(out)[0].max() == 2


def test_several_thresholds_and_fragments(affs_file):
    out = f"{affs_file.parent}/seg.h5:" + "seg/{threshold}"
    frags = f"{affs_file.parent}/seg.h5:fragments"
    args = ["segment", f"{affs_file}:affs", "-o", out, "--thresholds", "0.5,0.95",
            "--fragments", frags, "--size-threshold", "0"]
    assert main(args) == 0
    assert read(f"{affs_file.parent}/seg.h5:seg/0.5")[0].max() == 2
    assert read(f"{affs_file.parent}/seg.h5:seg/0.95")[0].max() == 1  # merges mean > 0.05
    assert read(frags)[0].max() == 2


@pytest.mark.parametrize(
    "key, extra, message",
    [
        ("two_channels", [], "at least 3 channels"),
        ("channels_last", [], "looks channels last"),
        ("out_of_range", [], "out_of_range' must hold values in [0, 1]"),
        ("affs", ["--thresholds", "0.3,0.5"], "{threshold}"),
        ("affs", ["--thresholds", "high"], "--thresholds"),
        ("affs", ["--low", "0.9", "--high", "0.5"], "low"),
    ],
)
def test_bad_input_exits_2_with_one_line(affs_file, capsys, key, extra, message):
    out = f"{affs_file.parent}/seg.h5:seg"
    assert main(["segment", f"{affs_file}:{key}", "--output", out, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emkit: error:") and "\n" not in err
    assert message in err


def test_existing_output_needs_overwrite(affs_file, capsys):
    out = f"{affs_file.parent}/seg.tif"
    assert main(["segment", f"{affs_file}:affs", "--output", out]) == 0
    assert main(["segment", f"{affs_file}:affs", "--output", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["segment", f"{affs_file}:affs", "--output", out, "--overwrite"]) == 0
    assert tifffile.imread(out).max() == 2


def test_boundary_map_goes_to_the_2d_watershed(tmp_path):
    boundaries = np.zeros((2, 6, 9), np.float32)
    boundaries[:, :, 4] = 1.0
    tifffile.imwrite(tmp_path / "b.tif", boundaries)
    out = tmp_path / "seg.npy"
    args = ["segment", str(tmp_path / "b.tif"), "--output", str(out), "--min-size", "0"]
    assert main(args) == 0
    seg = np.load(out)
    assert seg.dtype == np.uint64 and np.unique(seg).tolist() == [1, 2, 3, 4]


def test_help_names_the_conventions(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = capsys.readouterr().out
    assert "CHANNELS FIRST" in text and "1 - t" in text and "(1,0,0)" in text


def test_cli_defaults_are_the_library_defaults():
    from emkit.postprocess import agglomeration, options, pipeline, watershed, watershed2d

    d = segment_cli.DEFAULTS
    defaults = options.DEFAULTS
    # the affinity options are read from emkit.postprocess.options itself
    assert segment_cli.segment_options is options
    assert d["thresholds"] == ",".join(f"{t:g}" for t in defaults.thresholds)
    assert {k: d[k] for k in options.NAMES if k != "thresholds"} == {
        k: v for k, v in options.DEFAULTS.to_dict().items() if k != "thresholds"}
    assert segment_cli.SCORINGS == options.SCORINGS
    assert defaults.bins == agglomeration.DEFAULT_BINS  # agglomerate()'s own default
    assert pipeline.DEFAULT_THRESHOLDS == defaults.thresholds
    assert (watershed.DEFAULT_LOW, watershed.DEFAULT_HIGH) == (defaults.low, defaults.high)
    assert set(options.NAMES) == set(options.WATERSHED_OPTIONS) | set(
        options.AGGLOMERATION_OPTIONS)
    # the boundary-map options are repeated in the CLI
    assert segment_cli.SEEDS == watershed2d.SEEDS
    assert d["seeds"] == watershed2d.DEFAULT_SEEDS
    assert d["seed_threshold"] == watershed2d.DEFAULT_SEED_THRESHOLD
    assert d["min_height"] == watershed2d.DEFAULT_MIN_HEIGHT
    assert d["smoothing"] == watershed2d.DEFAULT_SMOOTHING
    assert d["min_size"] == watershed2d.DEFAULT_MIN_SIZE


def test_the_segment_options_are_in_the_signatures_and_checked():
    import inspect

    from emkit.blockwise import segment_blockwise
    from emkit.errors import InputError
    from emkit.postprocess import options, segment_affinities

    for function in (segment_affinities, segment_blockwise):
        parameters = inspect.signature(function).parameters
        assert {k: parameters[k].default for k in options.NAMES} == {
            k: getattr(options.DEFAULTS, k) for k in options.NAMES}
    checked = options.SegmentOptions.checked(thresholds=[0.3, 0.5], bins=np.int64(8))
    assert checked.thresholds == (0.3, 0.5) and type(checked.bins) is int
    assert checked.watershed == {k: getattr(options.DEFAULTS, k)
                                 for k in options.WATERSHED_OPTIONS}
    for bad, match in (({"colour": 1}, r"\['colour'\]; allowed: thresholds, scoring"),
                       ({"low": 0.9, "high": 0.5}, "low must be smaller than high"),
                       ({"thresholds": []}, "thresholds"), ({"scoring": "max"}, "scoring")):
        with pytest.raises(InputError, match=match):
            segment_affinities(np.zeros((2, 2, 2, 3), np.float32), **bad)
    with pytest.raises(InputError, match="repeat a value"):
        options.threshold_outputs("s.h5:{threshold}", (0.5, 0.50))


def test_building_the_parser_imports_no_heavy_module():
    code = (
        "import sys; from emkit.cli.main import make_parser; make_parser(); "
        "print(sorted(m for m in ('numba', 'tensorflow', 'keras', 'skimage') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_building_the_parser_compiles_nothing():
    """The segment options come from emkit.postprocess.options without its numba stages."""
    import subprocess
    import sys

    code = ("import sys; from emkit.cli.main import make_parser; make_parser(); "
            "print(sorted(m for m in ('numba', 'emkit.postprocess.watershed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_probabilities_an_ulp_above_one_are_rounding(tmp_path):
    """Blended tiles can sum to 1.0000001; that is read as 1, while 1.01 is refused."""
    from emkit.cli.segment import read_probabilities
    from emkit.errors import InputError
    from emkit.io import open_volume

    np.save(tmp_path / "ulp.npy", np.array([[[0.5, np.nextafter(np.float32(1), 2)]]], np.float32))
    np.save(tmp_path / "far.npy", np.array([[[0.5, 1.01]]], np.float32))
    data = read_probabilities(open_volume(str(tmp_path / "ulp.npy")), "INPUT")
    assert data.tolist() == [[[0.5, 1.0]]]
    with pytest.raises(InputError, match="must hold values in"):
        read_probabilities(open_volume(str(tmp_path / "far.npy")), "INPUT")
