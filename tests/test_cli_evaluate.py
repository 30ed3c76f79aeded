"""`emkit evaluate`: JSON keys, exit codes, and one-line errors on bad input."""

import json

import h5py
import numpy as np
import pytest
import tifffile

from emkit.cli.main import main
from emkit.metrics import METRICS


@pytest.fixture
def volumes(tmp_path):
    gt = np.kron(np.arange(1, 5, dtype=np.uint32).reshape(1, 2, 2), np.ones((3, 8, 8), np.uint32))
    seg = gt.copy()
    seg[:, :, :4] += 10  # split every object: a known, imperfect segmentation
    path = tmp_path / "vols.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("gt", data=gt).attrs["resolution"] = (40.0, 4.0, 4.0)
        f.create_dataset("seg", data=seg).attrs["resolution"] = (40.0, 4.0, 4.0)
        f.create_dataset("float_gt", data=gt.astype(np.float32))
        f.create_dataset("small", data=gt[:, :8, :8])
        f.create_dataset("flat", data=gt[0])
    return path, seg, gt


def test_json_output_has_every_key(volumes, capsys):
    path, seg, gt = volumes
    assert main(["evaluate", f"{path}:seg", f"{path}:gt", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(METRICS) <= set(result)
    assert result["pixel_error"] is None  # two label volumes: no pixel error
    from emkit.metrics import adapted_rand_error, variation_of_information

    assert result["adapted_rand_error"] == pytest.approx(adapted_rand_error(seg, gt), abs=1e-12)
    assert (result["voi_split"], result["voi_merge"]) == pytest.approx(
        variation_of_information(seg, gt), abs=1e-12
    )
    # half of the objects are split in two halves: H(seg | gt) = 0.5 bit
    assert result["voi_split"] == pytest.approx(0.5, abs=1e-12)
    assert result["cremi_score"] is not None  # voxel size read from the file
    assert result["voxel_size_nm"] == [40.0, 4.0, 4.0]


def test_metrics_subset_and_table(volumes, capsys):
    path, _, _ = volumes
    assert main(["evaluate", f"{path}:seg", f"{path}:gt", "--json", "--metrics", "voi_merge"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["voi_merge"] == 0.0 and result["voi_split"] is None
    assert main(["evaluate", f"{path}:seg", f"{path}:gt"]) == 0
    out = capsys.readouterr().out
    assert "adapted_rand_error" in out and "voi_split" in out and "1.000000" in out


def test_boundary_map_against_isbi_tiff(tmp_path, capsys):
    labels = np.full((2, 16, 16), 255, np.uint8)
    labels[:, 8, :] = 0
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    tifffile.imwrite(tmp_path / "pred.tif", (labels == 0).astype(np.float32))
    code = main(["evaluate", str(tmp_path / "pred.tif"), str(tmp_path / "labels.tif"), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["gt_kind"] == "isbi" and result["pred_kind"] == "boundaries"
    assert result["pixel_error"] == 0.0 and result["v_rand"] == 1.0 and result["v_info"] == 1.0
    assert result["adapted_rand_error"] is None


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("emkit: error:") and "\n" not in err
    return err


def test_missing_file(tmp_path, volumes, capsys):
    path, _, _ = volumes
    err = _error(capsys, ["evaluate", str(tmp_path / "nope.tif"), f"{path}:gt"])
    assert "nope.tif" in err


def test_wrong_hdf5_key(volumes, capsys):
    path, _, _ = volumes
    err = _error(capsys, ["evaluate", f"{path}:volumes/raw", f"{path}:gt"])
    assert "volumes/raw" in err and "gt" in err  # names the key and what exists


def test_corrupt_tiff(tmp_path, volumes, capsys):
    path, _, _ = volumes
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.zeros((3, 16, 16), np.uint8), photometric="minisblack")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(good.read_bytes()[:40])
    err = _error(capsys, ["evaluate", str(bad), f"{path}:gt"])
    assert "bad.tif" in err


def test_mismatched_shapes(volumes, capsys):
    path, _, _ = volumes
    err = _error(capsys, ["evaluate", f"{path}:small", f"{path}:gt"])
    assert "(3, 8, 8)" in err and "(3, 16, 16)" in err


def test_2d_given_where_3d_expected(volumes, capsys):
    path, _, _ = volumes
    err = _error(capsys, ["evaluate", f"{path}:flat", f"{path}:gt"])
    assert "(16, 16)" in err and "3D" in err


def test_float_labels(volumes, capsys):
    path, _, _ = volumes
    err = _error(capsys, ["evaluate", f"{path}:seg", f"{path}:float_gt"])
    assert "float" in err and "integer" in err


def test_unknown_metric(volumes, capsys):
    path, _, _ = volumes
    err = _error(capsys, ["evaluate", f"{path}:seg", f"{path}:gt", "--metrics", "dice"])
    assert "dice" in err and "adapted_rand_error" in err
