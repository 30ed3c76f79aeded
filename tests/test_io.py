"""Tests of emkit.io: round trips, lazy crops, overwrite refusal, atomic writes, errors."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from emkit.errors import InputError, MissingDataError, OverwriteError
from emkit.io import (
    Volume,
    _hdf5,
    list_keys,
    open_volume,
    parse_spec,
    read_attributes,
    read_volume,
    require_ndim,
    write_volume,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared data folder {SHARED} is absent"
)

VOXEL = (40.0, 4.0, 4.0)


def _volume(dtype=np.uint16):
    return (np.arange(3 * 5 * 6) * 7 % 251).astype(dtype).reshape(3, 5, 6)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- specs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, path, key, fmt",
    [
        ("a.tif", "a.tif", None, "tiff"),
        ("a.TIFF", "a.TIFF", None, "tiff"),
        ("f.h5:volumes/raw", "f.h5", "volumes/raw", "hdf5"),
        ("f.hdf:/volumes/raw", "f.hdf", "volumes/raw", "hdf5"),
        ("run:3/f.hdf5:raw", "run:3/f.hdf5", "raw", "hdf5"),
        ("x.h5:y/f.h5:raw", "x.h5:y/f.h5", "raw", "hdf5"),
        ("s.zarr", "s.zarr", None, "zarr"),
        ("s.zarr:a/b", "s.zarr", "a/b", "zarr"),
        ("s.zarr/a/b", "s.zarr", "a/b", "zarr"),
        ("a.npy", "a.npy", None, "npy"),
        ("pngs/", "pngs", None, "png"),
    ],
)
def test_parse_spec(spec, path, key, fmt):
    parsed = parse_spec(spec)
    assert (parsed.path, parsed.key, parsed.format) == (Path(path), key, fmt)


def test_unknown_extension_lists_formats():
    with pytest.raises(InputError, match=r"'volume\.xyz'.*supported formats: .*TIFF.*HDF5"):
        parse_spec("volume.xyz")
    with pytest.raises(InputError, match="supported formats"):
        write_volume("volume.xyz", np.zeros((2, 2, 2)))


def test_package_spec():
    volume = open_volume("emkit:isbi2012/train-labels")
    assert volume.shape == (25, 512, 512)
    with pytest.raises(MissingDataError, match="emkit:isbi2012/train-labels"):
        open_volume("emkit:isbi2012/nothing")


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, dtype, stores_voxel_size",
    [
        ("v.tif", np.float32, True),
        ("v.tif", np.uint64, True),
        ("v.h5:volumes/raw", np.uint8, True),
        ("v.h5:volumes/labels/neuron_ids", np.uint64, True),
        ("v.zarr:volumes/raw", np.float32, True),
        ("v.zarr", np.int32, True),
        ("v.npy", np.int16, False),
        ("pngs/", np.uint8, False),
        ("pngs16/", np.uint16, False),
    ],
)
def test_round_trip(tmp_path, name, dtype, stores_voxel_size):
    data = _volume(dtype)
    if np.dtype(dtype).kind == "f":
        data = data / 7
    spec = f"{tmp_path}/{name}"
    voxel = VOXEL if stores_voxel_size else None
    write_volume(spec, data, voxel_size_nm=voxel)
    volume = open_volume(spec)
    assert volume.shape == data.shape
    assert volume.dtype == data.dtype
    assert volume.voxel_size_nm == voxel
    back = np.asarray(volume)
    assert back.dtype == data.dtype
    np.testing.assert_array_equal(back, data)
    np.testing.assert_array_equal(volume[1:3, ::2, -2:], data[1:3, ::2, -2:])
    assert not any(".emkit-tmp-" in p.name for p in tmp_path.rglob("*"))


def test_round_trip_offset_and_channels(tmp_path):
    affs = np.random.default_rng(0).random((3, 2, 4, 5), dtype=np.float32)
    for spec in (tmp_path / "a.h5:affs", tmp_path / "a.zarr:affs", tmp_path / "a.tif"):
        write_volume(str(spec), affs, voxel_size_nm=VOXEL, offset_nm=(80, 0, 8))
        volume = open_volume(str(spec))
        assert volume.offset_nm == (80.0, 0.0, 8.0)
        assert volume.voxel_size_nm == VOXEL
        np.testing.assert_array_equal(volume[1], affs[1])


def test_2d_image_is_read_as_is(tmp_path):
    image = _volume(np.uint8)[0]
    write_volume(str(tmp_path / "a.tif"), image)
    write_volume(str(tmp_path / "a.png"), image)
    for name in ("a.tif", "a.png"):
        np.testing.assert_array_equal(read_volume(str(tmp_path / name)), image)


def test_png_folder_is_sorted_by_number(tmp_path):
    from PIL import Image

    folder = tmp_path / "sections"
    folder.mkdir()
    for z in (10, 2, 1):
        Image.fromarray(np.full((3, 4), z, np.uint8)).save(folder / f"iso.{z}.png")
    volume = open_volume(str(folder))
    assert volume.shape == (3, 3, 4)
    assert volume[:, 0, 0].tolist() == [1, 2, 10]


def test_hdf5_new_key_in_existing_file(tmp_path):
    spec = tmp_path / "f.h5"
    write_volume(f"{spec}:raw", _volume(), voxel_size_nm=VOXEL)
    write_volume(f"{spec}:labels/ids", _volume(np.uint32))
    assert list_keys(spec) == ["labels/ids", "raw"]
    np.testing.assert_array_equal(read_volume(f"{spec}:raw"), _volume())


def test_zarr_new_key_in_existing_store(tmp_path):
    store = tmp_path / "s.zarr"
    write_volume(f"{store}:volumes/raw", _volume())
    write_volume(f"{store}:volumes/labels", _volume(np.uint64))
    assert list_keys(store) == ["volumes/labels", "volumes/raw"]
    assert read_volume(f"{store}:volumes/labels").dtype == np.uint64
    with pytest.raises(InputError, match="holds the arrays volumes/labels, volumes/raw"):
        write_volume(str(store), _volume(), overwrite=True)  # would delete both arrays


# --- laziness ----------------------------------------------------------------------------


def test_hdf5_crop_reads_only_the_crop(tmp_path, monkeypatch):
    data = np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16)
    spec = f"{tmp_path / 'f.h5'}:raw"
    write_volume(spec, data, chunks=(1, 4, 4))
    volume = open_volume(spec)
    assert not any(isinstance(v, np.ndarray) for v in vars(volume).values())
    assert len(pickle.dumps(volume)) < 1000
    boxes = []
    read = _hdf5.read
    monkeypatch.setattr(_hdf5, "read", lambda p, k, box: boxes.append(box) or read(p, k, box))
    np.testing.assert_array_equal(volume[0:2, 0:4, 0:4], data[0:2, 0:4, 0:4])
    assert boxes == [(slice(0, 2), slice(0, 4), slice(0, 4))]
    np.testing.assert_array_equal(volume[5, 10:2:-3, [3, 1]], data[5, 10:2:-3, [3, 1]])
    assert boxes[-1] == (slice(5, 6), slice(4, 11), slice(1, 4))


def test_volume_indexing_matches_numpy(tmp_path):
    data = _volume()
    volume = open_volume(write_volume(str(tmp_path / "v.npy"), data))
    for index in (np.s_[...], np.s_[-1], np.s_[..., 2], np.s_[::-1, 1:4, [0, 5]],
                  np.s_[1:1], np.s_[:, np.array([True, False, True, False, True])]):
        np.testing.assert_array_equal(volume[index], data[index])
    with pytest.raises(IndexError):
        volume[3]


def test_volume_is_picklable_and_reads_in_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    data = _volume()
    volume = open_volume(write_volume(f"{tmp_path / 'f.h5'}:raw", data))
    clone = pickle.loads(pickle.dumps(volume))
    with ThreadPoolExecutor(2) as pool:
        sections = list(pool.map(lambda z: clone[z], range(3)))
    np.testing.assert_array_equal(np.stack(sections), data)
    stack = open_volume(write_volume(str(tmp_path / "v.tif"), data))
    with ThreadPoolExecutor(2) as pool:
        sections = list(pool.map(lambda z: stack[z], [0, 1, 2] * 4))
    np.testing.assert_array_equal(np.stack(sections[:3]), data)


# --- overwrite and atomicity -------------------------------------------------------------


@pytest.mark.parametrize("name", ["v.tif", "v.npy", "v.h5:raw", "v.zarr:raw", "v.zarr", "p/"])
def test_overwrite_is_refused_then_allowed(tmp_path, name):
    spec = f"{tmp_path}/{name}"
    write_volume(spec, _volume(np.uint8))
    with pytest.raises(OverwriteError, match="overwrite=True") as error:
        write_volume(spec, np.zeros((3, 5, 6), np.uint8))
    assert "v" in str(error.value) or "p" in str(error.value)
    np.testing.assert_array_equal(read_volume(spec), _volume(np.uint8))
    write_volume(spec, np.zeros((2, 2, 2), np.uint8), overwrite=True)
    assert read_volume(spec).shape == (2, 2, 2)
    assert not any(".emkit-tmp-" in p.name for p in tmp_path.rglob("*"))


def _fail(*args, **kwargs):
    raise RuntimeError("disk full")


@pytest.mark.parametrize("name", ["v.tif", "v.npy", "v.h5:raw", "v.zarr", "p/"])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, name):
    import tifffile
    from PIL import Image

    monkeypatch.setattr(tifffile, "imwrite", _fail)
    monkeypatch.setattr(np, "save", _fail)
    monkeypatch.setattr(Image.Image, "save", _fail)
    monkeypatch.setattr(_hdf5, "_create", lambda f, key, *a: (f.create_dataset(key, (2,)), _fail()))
    import zarr

    monkeypatch.setattr(zarr, "create_array", _fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_volume(f"{tmp_path}/{name}", _volume(np.uint8))
    assert _listing(tmp_path) == []


def test_failed_write_into_existing_hdf5_keeps_the_file(tmp_path, monkeypatch):
    spec = tmp_path / "f.h5"
    write_volume(f"{spec}:raw", _volume())
    monkeypatch.setattr(_hdf5, "_create", lambda f, key, *a: (f.create_dataset(key, (2,)), _fail()))
    with pytest.raises(RuntimeError):
        write_volume(f"{spec}:raw", np.zeros(3), overwrite=True)
    with pytest.raises(RuntimeError):
        write_volume(f"{spec}:new", np.zeros(3))
    assert list_keys(spec) == ["raw"]
    np.testing.assert_array_equal(read_volume(f"{spec}:raw"), _volume())
    assert _listing(tmp_path) == ["f.h5"]


def test_bad_write_arguments(tmp_path):
    with pytest.raises(InputError, match="dataset key"):
        write_volume(str(tmp_path / "a.h5"), _volume())
    write_volume(f"{tmp_path / 'b.h5'}:raw", _volume())
    with pytest.raises(InputError, match="'raw' is a dataset, not a group"):
        write_volume(f"{tmp_path / 'b.h5'}:raw/x", _volume())
    (tmp_path / "b.h5").unlink()
    with pytest.raises(InputError, match="3 values"):
        write_volume(str(tmp_path / "a.h5:x"), _volume(), voxel_size_nm=(4, 4))
    with pytest.raises(InputError, match="positive"):
        write_volume(str(tmp_path / "a.h5:x"), _volume(), voxel_size_nm=(0, 4, 4))
    with pytest.raises(InputError, match="PNG stores 8- or 16-bit"):
        write_volume(f"{tmp_path}/p/", _volume(np.float32))
    with pytest.raises(InputError, match="dtype <U1"):
        write_volume(str(tmp_path / "a.npy"), np.array(["a"]))
    with pytest.warns(UserWarning, match="cannot store voxel_size_nm"):
        write_volume(str(tmp_path / "a.npy"), _volume(), voxel_size_nm=VOXEL)
    assert _listing(tmp_path) == ["a.npy"]


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["none.tif", "none.h5:raw", "none.zarr", "none.npy", "none/"])
def test_missing_file_names_the_path(tmp_path, name):
    with pytest.raises(MissingDataError, match="none"):
        open_volume(f"{tmp_path}/{name}")


def test_missing_key_lists_existing_keys(tmp_path):
    write_volume(f"{tmp_path / 'f.h5'}:volumes/raw", _volume())
    write_volume(f"{tmp_path / 'f.h5'}:volumes/labels", _volume())
    write_volume(f"{tmp_path / 's.zarr'}:volumes/raw", _volume())
    with pytest.raises(MissingDataError, match=r"'volumes/rav'.*volumes/labels, volumes/raw"):
        open_volume(f"{tmp_path / 'f.h5'}:volumes/rav")
    with pytest.raises(MissingDataError, match=r"'volumes/raw/x'.*volumes/labels, volumes/raw"):
        open_volume(f"{tmp_path / 'f.h5'}:volumes/raw/x")
    with pytest.raises(MissingDataError, match=r"name one as .*volumes/labels, volumes/raw"):
        open_volume(str(tmp_path / "f.h5"))
    with pytest.raises(MissingDataError, match=r"'volumes/rav'.*arrays there: volumes/raw"):
        open_volume(f"{tmp_path / 's.zarr'}:volumes/rav")
    assert open_volume(str(tmp_path / "s.zarr")).key == "volumes/raw"  # the only array


def test_not_an_hdf5_file(tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="bad.h5"):
        open_volume(f"{tmp_path / 'bad.h5'}:raw")


@needs_shared
@pytest.mark.parametrize("name, fraction", [("train-volume.tif", 0.5), ("train-labels.tif", 0.9),
                                            ("train-labels.tif", 0.0005)])
def test_truncated_tiff_is_an_input_error(tmp_path, name, fraction):
    data = (SHARED / "isbi2012" / name).read_bytes()
    bad = tmp_path / name
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError, match=name):
        np.asarray(open_volume(str(bad)))


def test_require_ndim(tmp_path):
    image = open_volume(write_volume(str(tmp_path / "file.tif"), np.zeros((512, 512), np.uint8)))
    message = r"expected a 3D \(z, y, x\) volume, got shape \(512, 512\) from '.*file.tif'"
    with pytest.raises(InputError, match=message):
        require_ndim(image, 3)
    with pytest.raises(InputError, match=r"3D \(z, y, x\) or 4D \(c, z, y, x\).*from 'pred'"):
        require_ndim(np.zeros(4), (3, 4), name="pred")
    assert require_ndim(image, 2) is image


# --- real data ---------------------------------------------------------------------------


@needs_shared
def test_isbi_labels():
    labels = open_volume(str(SHARED / "isbi2012" / "train-labels.tif"))
    assert labels.shape == (25, 512, 512)
    assert labels.dtype == np.uint8
    assert labels.voxel_size_nm is None
    assert set(np.unique(labels[20:25]).tolist()) == {0, 255}


@needs_shared
def test_medulla_raw():
    raw = open_volume(f"{SHARED / 'neuroproof_medulla' / 'neuroproof_medulla.h5'}:volumes/raw")
    assert isinstance(raw, Volume)
    assert raw.shape == (188, 250, 250)
    assert raw.dtype == np.uint8
    assert raw.voxel_size_nm == (10.0, 10.0, 10.0)
    assert raw.offset_nm == (0.0, 0.0, 0.0)
    assert raw[100:102, :8, :8].shape == (2, 8, 8)


@needs_shared
def test_cremi_crop_attributes():
    spec = f"{SHARED / 'cremi_c_crop' / 'cremi_c_crop.h5'}:volumes/labels/neuron_ids"
    attrs = read_attributes(spec)
    assert attrs["labeled_sections"] == [4]
    assert attrs["blank_sections"] == [14]
