"""Tests for emkit.export and ``emkit export``: round trips read back with tifffile/h5py."""

import doctest

import h5py
import numpy as np
import pytest
import tifffile

from emkit import export
from emkit.cli import export as export_cli
from emkit.cli.main import main
from emkit.errors import InputError, OverwriteError


def test_docstring_examples():
    assert doctest.testmod(export).failed == 0


def test_isbi2012_round_trip_is_inverted_float32(tmp_path):
    boundaries = np.random.default_rng(0).random((3, 5, 6)).astype(np.float64)
    path = export.export_isbi2012(tmp_path / "isbi.tif", boundaries)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 3
        back = tif.asarray()
    assert back.dtype == np.float32 and back.shape == (3, 5, 6)
    np.testing.assert_allclose(back, 1 - boundaries, rtol=0, atol=1e-7)  # 1 = interior


def test_snemi3d_round_trip_keeps_ids_or_renumbers_big_ones(tmp_path):
    seg = np.array([[[0, 5, 5], [7, 7, 0]], [[5, 9, 9], [0, 0, 7]]], np.uint64)
    back = tifffile.imread(export.export_snemi3d(tmp_path / "a.tif", seg))
    assert back.dtype == np.uint32 and (back == seg).all()
    big = seg.copy()
    big[big == 9] = 2**40
    back = tifffile.imread(export.export_snemi3d(tmp_path / "b.tif", big))
    assert back.dtype == np.uint32
    assert back.tolist() == [[[0, 1, 1], [2, 2, 0]], [[1, 3, 3], [0, 0, 2]]]


def test_cremi_round_trip_with_attributes_and_raw(tmp_path):
    seg = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    raw = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = export.export_cremi(tmp_path / "sample.hdf", seg, raw=raw, offset_nm=(80, 0, 8))
    with h5py.File(path, "r") as f:
        labels = f["volumes/labels/neuron_ids"]
        assert labels.dtype == np.uint64 and (labels[()] == seg).all()
        assert labels.attrs["resolution"].tolist() == [40.0, 4.0, 4.0]
        assert labels.attrs["offset"].tolist() == [80.0, 0.0, 8.0]
        assert (f["volumes/raw"][()] == raw).all()
        assert f["volumes/raw"].attrs["resolution"].tolist() == [40.0, 4.0, 4.0]


def test_exports_refuse_to_overwrite_and_bad_input(tmp_path):
    seg = np.ones((1, 2, 2), np.uint8)
    path = export.export_snemi3d(tmp_path / "a.tif", seg)
    with pytest.raises(OverwriteError):
        export.export_snemi3d(path, seg)
    export.export_snemi3d(path, seg * 2, overwrite=True)
    assert tifffile.imread(path).max() == 2
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        export.export_isbi2012(tmp_path / "b.tif", np.full((1, 2, 2), 3.0))
    with pytest.raises(InputError, match="integer"):
        export.export_cremi(tmp_path / "c.h5", np.zeros((1, 2, 2), np.float32))
    with pytest.raises(InputError, match="uint8"):
        export.export_cremi(tmp_path / "c.h5", seg, raw=np.zeros((1, 2, 3), np.uint8))
    assert not (tmp_path / "c.h5").exists()


def test_cli_export_each_format(tmp_path, capsys):
    seg = np.array([[[1, 1, 2], [3, 3, 2]]], np.uint64)
    boundaries = np.array([[[0.0, 0.25, 1.0], [0.5, 0.75, 1.0]]], np.float32)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["seg"] = seg
        f["seg"].attrs["resolution"] = [30.0, 6.0, 6.0]
        f["boundaries"] = boundaries
        f["affs"] = np.stack([np.ones_like(boundaries), 1 - boundaries, 1 - boundaries])
        f["raw"] = np.full(seg.shape, 7, np.uint8)
    src = f"{tmp_path}/in.h5"
    assert main(["export", "isbi2012", f"{src}:boundaries", str(tmp_path / "i.tif")]) == 0
    np.testing.assert_allclose(tifffile.imread(tmp_path / "i.tif"), 1 - boundaries)
    assert main(["export", "isbi2012", f"{src}:affs", str(tmp_path / "j.tif")]) == 0
    np.testing.assert_allclose(tifffile.imread(tmp_path / "j.tif"), 1 - boundaries)
    args = ["export", "isbi2012", f"{src}:boundaries", str(tmp_path / "k.tif"), "--invert"]
    assert main(args) == 0
    np.testing.assert_allclose(tifffile.imread(tmp_path / "k.tif"), boundaries)
    assert main(["export", "snemi3d", f"{src}:seg", str(tmp_path / "s.tif")]) == 0
    assert (tifffile.imread(tmp_path / "s.tif") == seg).all()
    args = ["export", "cremi", f"{src}:seg", str(tmp_path / "c.hdf"), "--raw", f"{src}:raw"]
    assert main(args) == 0
    with h5py.File(tmp_path / "c.hdf", "r") as f:
        assert f["volumes/labels/neuron_ids"].attrs["resolution"].tolist() == [30.0, 6.0, 6.0]
        assert (f["volumes/raw"][()] == 7).all()
    capsys.readouterr()
    assert main(["export", "snemi3d", f"{src}:boundaries", str(tmp_path / "t.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emkit: error:") and "integer" in err and "\n" not in err
    assert main(["export", "snemi3d", f"{src}:seg", str(tmp_path / "s.tif")]) == 2


def test_cli_export_formats_and_help(capsys):
    assert export_cli.FORMATS == export.FORMATS
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "1 = cell interior" in capsys.readouterr().out
