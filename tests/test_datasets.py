"""Tests of emkit.datasets and the `emkit data` command."""

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.datasets import (
    DATASETS,
    Dataset,
    check_files,
    data_root,
    load_dataset,
    section_runs,
    split_sections,
    take_sections,
    verify_files,
)
from emkit.datasets.cremi import load_cremi_c_crop
from emkit.datasets.isbi2012 import ISBI2012, PACKAGE_FOLDER
from emkit.datasets.medulla import load_medulla
from emkit.errors import InputError, MissingDataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared data folder {SHARED} is absent"
)


@pytest.fixture(autouse=True)
def _empty_data_root(tmp_path, monkeypatch):
    """Every test starts with an empty data root, whatever the machine has."""
    monkeypatch.setenv("EMKIT_DATA", str(tmp_path / "emkit-data"))


# --- data root ---------------------------------------------------------------------------


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("EMKIT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("EMKIT_DATA")
    assert data_root() == tmp_path / "xdg" / "emkit" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "emkit" / "data"


# --- ISBI 2012 ---------------------------------------------------------------------------


def test_isbi_from_package_data():
    isbi = load_dataset("isbi2012")
    assert isbi.source == str(PACKAGE_FOLDER)
    assert isbi.raw.shape == isbi.labels.shape == (25, 512, 512)
    assert isbi.raw.dtype == isbi.labels.dtype == np.uint8
    assert isbi.voxel_size_nm == (50.0, 4.0, 4.0)
    assert isbi.label_kind == "isbi"
    assert isbi.test is None
    assert set(np.unique(isbi.labels[0]).tolist()) == {0, 255}


def test_isbi_split_by_sections():
    isbi = load_dataset("isbi2012")
    split = split_sections(isbi)
    assert split.train == tuple(range(20))
    assert split.validation == (20, 21, 22, 23, 24)
    assert not set(split.train) & set(split.validation)
    assert split_sections(isbi, validation=[24, 20]).validation == (20, 24)
    assert split_sections(isbi, validation_fraction=0.2) == split
    validation = take_sections(isbi, split.validation)
    assert validation.raw.shape == (5, 512, 512)
    np.testing.assert_array_equal(validation.labels[0], isbi.labels[20])


def test_isbi_from_data_root_wins(tmp_path):
    folder = tmp_path / "root" / "isbi2012"
    folder.mkdir(parents=True)
    from emkit.io import write_volume

    write_volume(str(folder / "train-volume.tif"), np.zeros((30, 8, 8), np.uint8))
    write_volume(str(folder / "train-labels.tif"), np.full((30, 8, 8), 255, np.uint8))
    write_volume(str(folder / "test-volume.tif"), np.zeros((30, 8, 8), np.uint8))
    isbi = load_dataset("isbi2012", root=tmp_path / "root")
    assert isbi.raw.shape == (30, 8, 8)
    assert isbi.test.shape == (30, 8, 8)
    assert split_sections(isbi).validation == (24, 25, 26, 27, 28, 29)  # last 20%
    statuses = {s.file.name: s.status for s in check_files(ISBI2012, root=tmp_path / "root")}
    assert statuses == dict.fromkeys(statuses, "unverified")  # another version, readable


def test_split_errors():
    toy = Dataset("toy", np.zeros((4, 2, 2)))
    with pytest.raises(InputError, match=r"\[7\] are outside the 4 sections"):
        split_sections(toy, validation=[7])
    with pytest.raises(InputError, match="leaves no section"):
        split_sections(toy, validation=[0, 1, 2, 3])
    with pytest.raises(InputError, match="not both"):
        split_sections(toy, validation=[1], validation_fraction=0.5)
    assert section_runs([8, 0, 1, 2, 7]) == [range(3), range(7, 9)]


def test_dataset_checks_shapes():
    with pytest.raises(InputError, match=r"labels have shape \(3, 2, 2\) but raw has shape"):
        Dataset("toy", np.zeros((4, 2, 2)), labels=np.zeros((3, 2, 2)))
    with pytest.raises(InputError, match=r"expected a 3D \(z, y, x\) volume"):
        Dataset("toy", np.zeros((2, 2)))


# --- checksums and missing files ---------------------------------------------------------


def test_shipped_files_pass_checksums():
    statuses = verify_files(ISBI2012)
    assert [s.status for s in statuses if s.file.required] == ["ok", "ok"]


def test_corrupted_copy_fails_with_clear_message(tmp_path):
    copy = tmp_path / "isbi2012"
    shutil.copytree(PACKAGE_FOLDER, copy)
    data = bytearray((copy / "train-labels.tif").read_bytes())
    data[-1000] ^= 0xFF
    (copy / "train-labels.tif").write_bytes(bytes(data))
    corrupted = replace(ISBI2012, package_folder=copy)
    message = r"train-labels\.tif.*damaged.*sha256 [0-9a-f]{64}, expected d1388"
    with pytest.raises(InputError, match=message):
        verify_files(corrupted)


def test_challenge_stack_whose_labels_differ_in_shape_is_refused(tmp_path):
    import tifffile

    folder = tmp_path / "snemi3d"
    folder.mkdir()
    tifffile.imwrite(folder / "train-input.tif", np.zeros((4, 16, 16), np.uint8),
                     photometric="minisblack")
    tifffile.imwrite(folder / "train-labels.tif", np.zeros((4, 16, 12), np.uint32),
                     photometric="minisblack")
    message = (r"snemi3d: images '.*train-input\.tif' \(4, 16, 16\) and labels "
               r"'.*train-labels\.tif' \(4, 16, 12\) differ in shape")
    with pytest.raises(InputError, match=message):
        load_dataset("snemi3d", root=tmp_path)
    tifffile.imwrite(folder / "train-labels.tif", np.ones((4, 16, 16), np.uint32),
                     photometric="minisblack")
    dataset = load_dataset("snemi3d", root=tmp_path)
    assert dataset.raw.shape == dataset.labels.shape == (4, 16, 16)
    assert dataset.test is None and dataset.validation_sections == (3,)
    assert dataset.voxel_size_nm == (30.0, 6.0, 6.0)


def test_missing_files_message_names_every_file_and_the_folder(tmp_path):
    with pytest.raises(MissingDataError) as error:
        load_dataset("snemi3d", root=tmp_path)
    message = str(error.value)
    for name in ("train-input.tif", "train-labels.tif"):
        assert str(tmp_path / "snemi3d" / name) in message
    assert "test-input.tif" in message  # optional, named as such
    assert "https://snemi3d.grand-challenge.org/" in message
    assert "\n" not in message  # one line
    message = r"cremi/sample_B_20160501\.hdf there .* downloaded from https://cremi\.org/data"
    with pytest.raises(MissingDataError, match=message):
        load_dataset("cremi", root=tmp_path, sample="B")
    with pytest.raises(InputError, match="unknown data set 'nope'"):
        load_dataset("nope")


# --- CREMI layout ------------------------------------------------------------------------


@needs_shared
def test_cremi_crop_sparse_and_blank_sections():
    crop = load_cremi_c_crop(root=SHARED)
    assert crop.raw.shape == crop.labels.shape == (18, 625, 625)
    assert crop.voxel_size_nm == (40.0, 8.0, 8.0)
    assert crop.labelled_sections == (4,)
    assert crop.blank_sections == (14,)
    assert crop.unlabelled_value == 0
    assert crop.labels[4].any() and not crop.labels[3].any()
    assert not crop.raw[14].any() and crop.raw[13].any()
    assert verify_files(DATASETS["cremi_c_crop"], root=SHARED)[0].status == "ok"


@needs_shared
def test_medulla_split():
    medulla = load_medulla(path=SHARED / "neuroproof_medulla" / "neuroproof_medulla.h5")
    assert medulla.raw.shape == (188, 250, 250)
    assert medulla.labels.dtype == np.uint64
    assert medulla.voxel_size_nm == (10.0, 10.0, 10.0)
    split = split_sections(medulla)
    assert split.validation == tuple(range(150, 188))
    assert split.train == tuple(range(150))


def test_load_volume_from_specs(tmp_path):
    from emkit.io import write_volume

    raw, seg = f"{tmp_path / 'v.h5'}:raw", f"{tmp_path / 'v.h5'}:seg"
    write_volume(raw, np.zeros((10, 4, 4), np.uint8), voxel_size_nm=(8, 4, 4))
    write_volume(seg, np.ones((10, 4, 4), np.uint32))
    dataset = load_dataset("volume", raw=raw, labels=seg)
    assert dataset.voxel_size_nm == (8.0, 4.0, 4.0)
    assert dataset.validation_sections == (8, 9)


# --- emkit data --------------------------------------------------------------------------


def test_cli_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "isbi2012: found" in out and "(shipped with emkit)" in out
    assert "snemi3d: missing" in out
    assert main(["data"]) == 0  # list is the default
    assert capsys.readouterr().out == out


def test_cli_check(tmp_path, capsys):
    assert main(["data", "check", "isbi2012"]) == 0
    assert main(["data", "check", "medulla", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "neuroproof_medulla" / "neuroproof_medulla.h5") in err
    assert main(["data", "check", "nope"]) == 2
    assert main(["data", "check", "volume"]) == 0  # nothing to check


@needs_shared
def test_cli_path(capsys):
    assert main(["data", "path", "medulla", "labels", "--root", str(SHARED)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith("neuroproof_medulla.h5:volumes/labels/neuron_ids")
    assert main(["data", "path", "isbi2012", "test"]) == 2  # not shipped, not in the root
    assert main(["data", "path", "isbi2012", "nope"]) == 2
