"""``emkit predict``: a round trip through files, and the errors a user meets."""

import re

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from emkit.cli.main import main
from emkit.inference import predict_volume
from emkit.inference.testing import affinity_model, mean_model
from emkit.io import read_volume, write_volume

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    raw = np.random.default_rng(5).integers(0, 256, (5, 23, 19), dtype=np.uint8)
    write_volume(folder / "raw.h5:volumes/raw", raw, voxel_size_nm=(40, 4, 4))
    write_volume(folder / "image.tif", raw[0])
    mean = mean_model(3, (4, 10, 10))
    mean.save(folder / "mean.keras")
    affs = affinity_model([(1, 0, 0), (0, 1, 0), (0, 0, 1)], (4, 10, 10))
    affs.save(folder / "affs.keras")
    (folder / "broken.keras").write_text("not a zip file")
    return folder, raw, mean, affs


def test_boundaries_round_trip_to_zarr(files, capsys):
    folder, raw, mean, _ = files
    out = folder / "pred.zarr"
    code = main(["predict", "--model", str(folder / "mean.keras"), "--input",
                 f"{folder}/raw.h5:volumes/raw", "--output", f"{out}:boundaries",
                 "--blend", "gaussian", "--batch-size", "3", "--quiet"])
    assert code == 0 and capsys.readouterr().out == ""
    array = zarr.open_array(str(out), path="boundaries", mode="r")
    assert array.shape == raw.shape  # one channel: (z, y, x) on disk
    assert list(array.attrs["resolution"]) == [40, 4, 4]
    expected = predict_volume(mean, raw, blend="gaussian", progress=False)
    np.testing.assert_allclose(array[...], expected[..., 0], rtol=0, atol=1e-6)


def test_affinities_are_written_channels_first_to_hdf5(files, capsys):
    folder, raw, _, affs = files
    out = folder / "affs.h5"
    args = ["predict", "--model", str(folder / "affs.keras"), "--input",
            f"{folder}/raw.h5:volumes/raw", "--output", f"{out}:volumes/affs", "--tta",
            "--tile", "4,8,8"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "channels first" in captured.out
    assert "tile" in captured.err  # the progress bar
    with h5py.File(out) as f:
        stored = f["volumes/affs"][...]
        assert f["volumes/affs"].attrs["resolution"].tolist() == [40, 4, 4]
    assert stored.shape == (3, *raw.shape)
    expected = predict_volume(affs, raw, progress=False)  # tta of an exact model changes nothing
    np.testing.assert_allclose(np.moveaxis(stored, 0, -1), expected, rtol=0, atol=1e-5)

    assert main(args) == 2  # exists now
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--quiet"]) == 0


def test_2d_model_on_a_tiff_image(files, tmp_path):
    folder, raw, _, _ = files
    model = mean_model(2, (9, 9))
    model.save(tmp_path / "mean2d.keras")
    code = main(["predict", "--model", str(tmp_path / "mean2d.keras"), "--input",
                 str(folder / "image.tif"), "--output", str(tmp_path / "pred.tif"), "--quiet"])
    assert code == 0
    pred = tifffile.imread(tmp_path / "pred.tif")
    assert pred.shape == raw.shape[1:] and pred.dtype == np.float32
    np.testing.assert_allclose(pred, predict_volume(model, raw[0], progress=False)[..., 0], atol=1e-6)
    assert read_volume(tmp_path / "pred.tif").shape == raw.shape[1:]


@pytest.mark.parametrize(
    "model, data, message",
    [
        ("missing.keras", "raw.h5:volumes/raw", "no model file"),
        ("broken.keras", "raw.h5:volumes/raw", "is not a Keras model"),
        ("raw.h5", "raw.h5:volumes/raw", "expected a .keras file"),
        ("mean.keras", "image.tif", r"3D .* 2D image of shape \(23, 19\)"),
        ("mean.keras", "nothing.h5:raw", "not found"),
    ],
)
def test_errors_exit_2_with_a_message(files, capsys, model, data, message):
    folder = files[0]
    code = main(["predict", "--model", str(folder / model), "--input", str(folder / data),
                 "--output", str(folder / "never.zarr"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("emkit: error:")
    assert re.search(message, err), err
    assert not (folder / "never.zarr").exists()


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--input", "--output", "--tile", "--blend", "--tta", "--overwrite",
                   "--batch-size", "--quiet"):
        assert option in text
