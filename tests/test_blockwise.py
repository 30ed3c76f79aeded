"""Blockwise prediction and segmentation on Dask: equal to whole-volume, resumable, safe.

Dask runs in this process (``processes=False``) to keep the tests fast; the
benchmark (benchmarks/blockwise.py) runs worker processes.
"""

import json
import os
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import zarr

from emkit.blockwise import (
    BlockFailed,
    block_grid,
    connect,
    predict_blockwise,
    segment_blockwise,
    stitch,
    store,
)
from emkit.blockwise import predict as bw_predict
from emkit.blockwise import segment as bw_segment
from emkit.errors import EmkitError, InputError, MissingDataError, OverwriteError
from emkit.inference import predict_volume
from emkit.io import read_volume, write_volume
from emkit.metrics import adapted_rand_error
from emkit.models.architectures import build_model
from emkit.models.testing import small_spec
from emkit.postprocess import noisy_affinities, segment_affinities

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def client():
    with connect(workers=2, processes=False) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random valid 3D convnet (context 4 per axis, 3 sigmoid channels), saved."""
    keras.utils.set_random_seed(7)
    x = keras.Input((10, 10, 10, 1))
    y = keras.layers.Conv3D(4, 3, activation="relu")(x)
    y = keras.layers.Conv3D(3, 3, activation="sigmoid")(y)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    keras.Model(x, y, name="tiny").save(path)
    return path


@pytest.fixture(scope="module")
def raw_zarr(tmp_path_factory):
    raw = np.random.default_rng(0).integers(0, 256, (21, 30, 26), dtype=np.uint8)
    path = tmp_path_factory.mktemp("raw") / "raw.zarr"
    write_volume(f"{path}:raw", raw, chunks=(8, 8, 8), voxel_size_nm=(40, 4, 4))
    return raw, f"{path}:raw"


@pytest.fixture(scope="module")
def medulla_affs(shared_data, tmp_path_factory):
    """Affinities of the medulla cube's ground truth, degraded deterministically.

    No network is trained: the affinities are the exact ones of the labels with the
    smooth logit noise and membrane leaks of :func:`emkit.postprocess.noisy_affinities`
    (seed 0), a stand-in for a prediction that both segmentations see alike.
    """
    labels = read_volume(
        shared_data / "neuroproof_medulla/neuroproof_medulla.h5:volumes/labels/neuron_ids"
    )
    affs = noisy_affinities(labels, seed=0)
    path = tmp_path_factory.mktemp("medulla") / "affs.zarr"
    write_volume(path, np.moveaxis(affs, -1, 0), chunks=(3, 64, 64, 64), compression=None)
    return affs, path


# --------------------------------------------------------------------------- blocks


def test_block_grid_tiles_the_volume_once_with_context():
    grid = block_grid((10, 100, 70), (4, 32, 32), context=((1, 2, 3), (1, 2, 3)))
    assert grid.shape == (3, 4, 3) and len(grid) == 36
    covered = np.zeros((10, 100, 70), int)
    for block in grid:
        covered[block.write] += 1
        assert grid.block(block.id) == block
    assert (covered == 1).all()
    last = grid.block((2, 3, 2))
    assert last.write == (slice(8, 10), slice(96, 100), slice(64, 70))
    assert last.read_start == (7, 94, 61) and last.read_shape == (4, 8, 12)
    assert grid.read_clipped(last) == (slice(7, 10), slice(94, 100), slice(61, 70))
    assert [(a, b.index) for a, b in grid.neighbours_before(last)] == [
        (0, (1, 3, 2)), (1, (2, 2, 2)), (2, (2, 3, 1))]


def test_block_smaller_than_halo_is_refused():
    with pytest.raises(InputError, match=r"block size \(4, 4, 4\).*halo.*\(8, 8, 8\) voxels of context"):
        block_grid((20, 20, 20), 4, context=16)


def test_face_edges_count_and_sum_each_pair():
    first = np.array([[1, 1, 2], [0, 2, 2]], np.uint64)
    last = np.array([[5, 6, 6], [5, 6, 2]], np.uint64)
    affs = np.array([[0.9, 0.5, 0.25], [0.1, 0.75, 1.0]])
    edges = stitch.face_edges(first, last, affs)
    assert edges["u"].tolist() == [1, 1, 2]
    assert edges["v"].tolist() == [5, 6, 6]
    assert edges["count"].tolist() == [1, 1, 2]
    np.testing.assert_allclose(edges["total"], [0.9, 0.5, 1.0])


# --------------------------------------------------------------------------- predict


def take_ticket(folder, block_id) -> int:
    """Numbers the calls of a task function across Dask's copies of it (atomic files)."""
    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    k = 0
    while True:
        try:
            fd = os.open(folder / str(k), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            k += 1
            continue
        os.write(fd, str(block_id).encode())
        os.close(fd)
        return k


def called(folder, below=None) -> list[int]:
    """The block ids of the calls numbered below ``below`` (all by default)."""
    folder = Path(folder)
    names = sorted(int(n) for n in os.listdir(folder)) if folder.exists() else []
    return [int((folder / str(k)).read_text()) for k in names if below is None or k < below]


def dying_after(n, real, counter):
    """``real``, except that call ``n`` and every later one raise, as a killed job's would."""
    def task(block, job):
        if take_ticket(counter, block.id) >= n:
            raise RuntimeError("worker killed")
        return real(block, job)
    return task


def settled_done(folder, stage, quiet=1.0, timeout=60.0) -> set[int]:
    """The done markers of ``stage`` once none has appeared for ``quiet`` seconds.

    A block that started before the kill runs on in its worker thread (a thread cannot
    be stopped) and may still write its marker; the test must read the markers as the
    rerun will.
    """
    deadline = time.monotonic() + timeout
    done = store.done_blocks(folder, stage)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        again = store.done_blocks(folder, stage)
        if again == done:
            return done
        done = again
    return done


def counting(real, counter):
    def task(block, job):
        take_ticket(counter, block.id)
        return real(block, job)
    return task



def test_blockwise_prediction_equals_whole_volume(tmp_path, client, tiny_model, raw_zarr):
    raw, spec = raw_zarr
    model = keras.saving.load_model(tiny_model)
    whole = predict_volume(model, raw, progress=False)
    out = f"{tmp_path}/pred.zarr:affs"
    summary = predict_blockwise(tiny_model, spec, out, block_shape=(8, 12, 12), client=client,
                                progress=False)
    assert summary["blocks"] == 3 * 3 * 3 and summary["run"] == 27
    got = zarr.open_array(f"{tmp_path}/pred.zarr", path="affs", mode="r")
    assert got.shape == (3, 21, 30, 26) and got.chunks == (3, 8, 12, 12)
    assert got.attrs["resolution"] == [40, 4, 4]
    got = np.moveaxis(got[...], 0, -1)
    np.testing.assert_allclose(got[2:-2, 2:-2, 2:-2], whole[2:-2, 2:-2, 2:-2], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-5)  # edges too: both mirror
    assert not store.job_folder(out).exists()


def test_blockwise_unet_blocks_start_on_its_period(tmp_path, client):
    keras.utils.set_random_seed(2)
    model = build_model(small_spec("unet2d"))  # valid convs, two poolings: period 4
    model.save(tmp_path / "unet.keras")
    raw = np.random.default_rng(2).integers(0, 256, (3, 47, 45), dtype=np.uint8)
    write_volume(tmp_path / "raw.h5:raw", raw, chunks=(1, 16, 16))
    summary = predict_blockwise(tmp_path / "unet.keras", tmp_path / "raw.h5:raw",
                                tmp_path / "pred.h5:pred", block_shape=(2, 21, 21),
                                client=client, progress=False, tile_shape=(8, 8))
    assert summary["block_shape"] == (2, 24, 24)  # rounded up to the period
    whole = predict_volume(model, raw, tile_shape=(8, 8), progress=False)[..., 0]
    with h5py.File(tmp_path / "pred.h5") as f:
        assert f["pred"].chunks == (2, 24, 24)
        np.testing.assert_allclose(f["pred"][...], whole, rtol=0, atol=1e-5)


def test_predict_resumes_only_the_missing_blocks(tmp_path, client, tiny_model, raw_zarr,
                                                 monkeypatch):
    _, spec = raw_zarr
    out = f"{tmp_path}/pred.zarr"
    real = bw_predict.predict_block
    monkeypatch.setattr(bw_predict, "predict_block", dying_after(5, real, tmp_path / "first"))
    with pytest.raises(BlockFailed, match="worker killed"):
        predict_blockwise(tiny_model, spec, out, block_shape=(8, 12, 12), client=client,
                          progress=False)
    folder = store.job_folder(out)
    done = settled_done(folder, "predict")
    started = called(tmp_path / "first", below=5)  # a started call may lose the race to the kill
    assert len(started) == 5 and done <= set(started) and done
    assert not (tmp_path / "pred.zarr").exists()  # nothing published half-way

    monkeypatch.setattr(bw_predict, "predict_block", counting(real, tmp_path / "rerun"))
    summary = predict_blockwise(tiny_model, spec, out, block_shape=(8, 12, 12), client=client,
                                progress=False)
    assert summary["skipped"] == len(done) and summary["run"] == 27 - len(done)
    assert summary["resumed"]
    assert sorted(called(tmp_path / "rerun")) == sorted(set(range(27)) - done)
    monkeypatch.setattr(bw_predict, "predict_block", real)
    predict_blockwise(tiny_model, spec, f"{tmp_path}/again.zarr", block_shape=(8, 12, 12),
                      client=client, progress=False)
    np.testing.assert_array_equal(read_volume(out), read_volume(f"{tmp_path}/again.zarr"))


# --------------------------------------------------------------------------- segment


def test_blockwise_segmentation_of_the_medulla_agrees_with_whole_volume(
        tmp_path, client, medulla_affs):
    affs, path = medulla_affs
    [whole] = segment_affinities(affs)
    summary = segment_blockwise(path, tmp_path / "seg.zarr", block_shape=64, halo=8,
                                client=client, progress=False)
    assert summary["blocks"] == 3 * 4 * 4
    seg = read_volume(tmp_path / "seg.zarr")
    assert seg.dtype == np.uint64 and seg.shape == whole.shape
    error = adapted_rand_error(seg, whole)
    assert error < 0.01, error
    assert set(np.unique(seg)) == set(range(1, int(seg.max()) + 1))  # consecutive ids


def _toy_affs(tmp_path, shape=(40, 72, 72)):
    """Noisy affinities of a small crop of random Voronoi-like cells (no data needed)."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    seeds = np.zeros(shape, np.int64)
    flat = rng.choice(seeds.size, 60, replace=False)
    seeds.reshape(-1)[flat] = np.arange(1, 61)
    _, index = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[tuple(index)]
    affs = noisy_affinities(labels, seed=1)
    path = tmp_path / "affs.h5"
    write_volume(f"{path}:affs", np.moveaxis(affs, -1, 0), chunks=(3, 16, 24, 24))
    return labels, affs, f"{path}:affs"


def test_segmentation_ids_are_unique_across_blocks(tmp_path, client):
    labels, _, spec = _toy_affs(tmp_path)
    grid = block_grid(labels.shape, (20, 24, 24), context=((4,) * 3, (4,) * 3))
    job = bw_segment.SegmentJob(affs=spec, folder=str(tmp_path / "job"), grid=grid,
                                threshold=0.5, watershed={})
    (tmp_path / "job").mkdir()
    store.create_block_array(tmp_path / "job/fragments.zarr", labels.shape, grid.block_shape,
                             "uint64")
    for block in grid:
        bw_segment.fragments_block(block, job)
    fragments = read_volume(tmp_path / "job/fragments.zarr")
    owners = {}
    for block in grid:
        ids = set(np.unique(fragments[block.write]).tolist()) - {0}
        assert ids and all(i // job.stride == block.id for i in ids)
        for i in ids:
            assert owners.setdefault(i, block.id) == block.id
    # a whole-volume object crossing block faces comes out as one segment
    summary = segment_blockwise(spec, tmp_path / "seg.h5:seg", block_shape=(20, 24, 24),
                                halo=4, client=client, progress=False)
    seg = read_volume(tmp_path / "seg.h5:seg")
    assert summary["segments"] == seg.max() < summary["fragments"]
    assert adapted_rand_error(seg, labels) < 0.05
    with h5py.File(tmp_path / "seg.h5") as f:
        assert f["seg"].chunks == (20, 24, 24)


def test_segment_resumes_only_the_missing_blocks(tmp_path, client, monkeypatch):
    _, _, spec = _toy_affs(tmp_path)
    options = {"block_shape": (20, 24, 24), "halo": 4, "client": client, "progress": False}
    out = tmp_path / "seg.zarr"
    real = bw_segment.fragments_block
    monkeypatch.setattr(bw_segment, "fragments_block", dying_after(7, real, tmp_path / "first"))
    with pytest.raises(BlockFailed, match="worker killed"):
        segment_blockwise(spec, out, **options)
    folder = store.job_folder(out)
    started = called(tmp_path / "first", below=7)
    # a call that started before the kill may not have finished (two workers race the
    # abort), so the done markers are a subset of the calls that started
    done = settled_done(folder, "fragments")
    assert len(started) == 7 and done <= set(started) and done
    assert not out.exists()
    monkeypatch.setattr(bw_segment, "fragments_block", counting(real, tmp_path / "rerun"))
    summary = segment_blockwise(spec, out, **options)
    assert sorted(called(tmp_path / "rerun")) == sorted(set(range(18)) - done)
    assert summary["run"] == {"fragments": 18 - len(done), "faces": 18, "agglomerate": 1,
                              "relabel": 18}
    monkeypatch.setattr(bw_segment, "fragments_block", real)
    segment_blockwise(spec, tmp_path / "again.zarr", **options)
    np.testing.assert_array_equal(read_volume(out), read_volume(tmp_path / "again.zarr"))


def test_rerun_with_other_parameters_or_existing_output(tmp_path, client):
    _, _, spec = _toy_affs(tmp_path)
    options = {"block_shape": (20, 24, 24), "halo": 4, "client": client, "progress": False}
    out = tmp_path / "seg.zarr"
    store.start_job(out, {"stage": "segment", "other": 1}, overwrite=False)
    with pytest.raises(InputError, match="unfinished blockwise job with other parameters"):
        segment_blockwise(spec, out, **options)
    first = segment_blockwise(spec, out, overwrite=True, **options)
    with pytest.raises(OverwriteError, match="exists"):
        segment_blockwise(spec, out, **options)
    assert first["segments"] == segment_blockwise(spec, out, overwrite=True, **options)["segments"]
    assert json.loads((out / "zarr.json").read_text())["node_type"] == "array"


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_name_the_file_key_and_shape(tmp_path, tiny_model):
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["affs"] = np.zeros((3, 8, 8, 8), np.float32)  # contiguous: not chunked
    with pytest.raises(InputError, match=r"flat.h5:affs.*\(3, 8, 8, 8\).*contiguous"):
        segment_blockwise(f"{tmp_path}/flat.h5:affs", tmp_path / "s.zarr")
    write_volume(tmp_path / "v.zarr:raw", np.zeros((8, 8, 8), np.float32), chunks=(4, 4, 4))
    with pytest.raises(InputError, match=r"v.zarr:raw' has shape \(8, 8, 8\).*4D \(c, z, y, x\)"):
        segment_blockwise(f"{tmp_path}/v.zarr:raw", tmp_path / "s.zarr")
    with pytest.raises(MissingDataError, match="no array 'nope'.*raw"):
        segment_blockwise(f"{tmp_path}/v.zarr:nope", tmp_path / "s.zarr")
    write_volume(tmp_path / "a.zarr", np.zeros((3, 40, 40, 40), np.float32), chunks=(3, 8, 8, 8))
    with pytest.raises(InputError, match=r"block size \(4, 4, 4\).*halo"):
        segment_blockwise(tmp_path / "a.zarr", tmp_path / "s.zarr", block_shape=4, halo=8)
    write_volume(tmp_path / "raw.tif", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(InputError, match="raw.tif' is tiff.*chunked Zarr"):
        predict_blockwise(tiny_model, tmp_path / "raw.tif", tmp_path / "p.zarr")
    with pytest.raises(InputError, match="blockwise jobs write Zarr"):
        segment_blockwise(tmp_path / "a.zarr", tmp_path / "s.tif")
    assert issubclass(MissingDataError, EmkitError)


# --------------------------------------------------------------------------- CLI


def test_cli_segment_blockwise_on_a_running_scheduler(tmp_path, client, capsys):
    from emkit.cli.main import main

    _, _affs, spec = _toy_affs(tmp_path)
    out = f"{tmp_path}/seg.zarr:seg"
    argv = ["segment", spec, "--output", out, "--blockwise", "--block-size", "20,24,24",
            "--halo", "4", "--scheduler", client.scheduler.address, "--quiet"]
    assert main(argv) == 0
    assert "18 blocks of (20, 24, 24)" in capsys.readouterr().err
    seg = read_volume(out)
    expected = segment_blockwise(spec, tmp_path / "api.zarr", block_shape=(20, 24, 24),
                                 halo=4, client=client, progress=False)
    assert seg.max() == expected["segments"]
    assert main(argv) == 2  # exists, no --overwrite
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--thresholds", "0.3,0.5"]) == 2
    assert "one threshold" in capsys.readouterr().err


def test_cli_help_describes_blockwise(capsys):
    from emkit.cli.main import main

    for command in ("predict", "segment"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "--blockwise" in text and "--scheduler ADDRESS" in text and "--workers N" in text
