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
    hierarchy,
    predict_blockwise,
    segment_blockwise,
    stitch,
    store,
)
from emkit.blockwise import cluster as bw_cluster
from emkit.blockwise import predict as bw_predict
from emkit.blockwise import segment as bw_segment
from emkit.errors import EmkitError, InputError, MissingDataError, OverwriteError
from emkit.inference import predict_volume
from emkit.io import read_volume, write_volume
from emkit.metrics import adapted_rand_error
from emkit.models.architectures import build_model
from emkit.models.testing import small_spec
from emkit.postprocess import affinity_watershed, noisy_affinities, segment_affinities
from emkit.postprocess.agglomeration import history_indices, threshold_luts
from emkit.postprocess.rag import RegionGraph
from emkit.targets import seg_to_affinities

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
    def task(block, job, *rest):
        if take_ticket(counter, block.id) >= n:
            raise RuntimeError("worker killed")
        return real(block, job, *rest)
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
    def task(block, job, *rest):
        take_ticket(counter, block.id)
        return real(block, job, *rest)
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


def test_blockwise_same_padded_unet_equals_whole_volume(tmp_path, client, raw_zarr):
    """A same-padded net's tiles depend on where they lie: blocks use the whole volume's."""
    keras.utils.set_random_seed(3)
    build_model(small_spec("unet3d")).save(tmp_path / "unet.keras")  # tiles 4x16x16
    model = keras.saving.load_model(tmp_path / "unet.keras")
    raw, spec = raw_zarr
    whole = predict_volume(model, raw, progress=False)  # bump blending, quarter overlap
    # Tile starts z 0, 3, .. 15, 17; y 0, 12, 16; x 0, 12 (step 3x12x12, overlap 1x4x4).
    # Blocks of 8x10x10 are rounded up to the period, 8x12x12. Every face cuts through
    # the tiles that overlap it.
    summary = predict_blockwise(tmp_path / "unet.keras", spec, tmp_path / "pred.zarr",
                                block_shape=(8, 10, 10), client=client, progress=False)
    assert summary["block_shape"] == (8, 12, 12) and summary["blocks"] == 27
    got = np.moveaxis(read_volume(tmp_path / "pred.zarr"), 0, -1)
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-5)  # edges included
    other_tiles = predict_volume(model, raw, overlap=(1, 6, 6), progress=False)
    assert np.abs(other_tiles - whole).max() > 1e-3  # so the blocks did use the same tiles


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
    thresholds = (0.45, 0.5, 0.55)
    wholes = segment_affinities(affs, thresholds=thresholds)
    summary = segment_blockwise(path, f"{tmp_path}/seg.zarr:" + "{threshold}", block_shape=64,
                                halo=8, client=client, progress=False, thresholds=thresholds)
    assert summary["blocks"] == 3 * 4 * 4 and summary["levels"] == 3
    assert summary["outputs"] == [f"{tmp_path}/seg.zarr:{t:g}" for t in thresholds]
    # no agglomeration task held the whole graph
    assert summary["largest_chunk_edges"] < 0.6 * summary["edges"]
    for whole, out, segments in zip(wholes, summary["outputs"], summary["segments"]):
        seg = read_volume(out)
        assert seg.dtype == np.uint64 and seg.shape == whole.shape
        error = adapted_rand_error(seg, whole)
        assert error < 0.01, (out, error)
        assert set(np.unique(seg)) == set(range(1, segments + 1))  # consecutive ids


def test_blockwise_quantile_scoring_agrees_with_whole_volume(tmp_path, client, medulla_affs):
    affs = np.ascontiguousarray(medulla_affs[0][:128, :160, :160])
    path = tmp_path / "crop.zarr"
    write_volume(path, np.moveaxis(affs, -1, 0), chunks=(3, 64, 64, 64), compression=None)
    thresholds = (0.4, 0.5)
    wholes = segment_affinities(affs, thresholds=thresholds, scoring="quantile")
    summary = segment_blockwise(path, f"{tmp_path}/seg.zarr:" + "{threshold}", block_shape=64,
                                halo=8, client=client, progress=False, thresholds=thresholds,
                                scoring="quantile")
    assert summary["blocks"] == 2 * 3 * 3
    for whole, out in zip(wholes, summary["outputs"]):
        error = adapted_rand_error(read_volume(out), whole)
        assert error < 0.01, (out, error)
    means = segment_affinities(affs, thresholds=thresholds)
    assert adapted_rand_error(wholes[0], means[0]) > 0.01  # quantile scoring is another one


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
    job = bw_segment.SegmentJob(affs=spec, folder=str(tmp_path / "job"), grid=grid)
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
    assert summary["segments"] == [seg.max()] and seg.max() < summary["fragments"]
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
    chunks = 18 + 4 + 1  # levels 0 (the blocks), 1 (2 x 2 x 2 blocks) and 2 (all)
    assert summary["run"] == {"fragments": 18 - len(done), "faces": 18, "agglomerate": chunks,
                              "tables": 1, "relabel": 18}
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


def test_chunk_levels_add_every_face_once_and_cover_the_grid():
    for shape in ((1, 1, 1), (2, 3, 3), (3, 5, 2), (4, 4, 4)):
        grid = block_grid(tuple(4 * n for n in shape), 4)
        top = hierarchy.top_level(grid.shape)
        [whole] = hierarchy.chunks(grid, top)
        assert whole.lo == (0, 0, 0) and whole.hi == grid.shape
        added = []
        for level in range(top + 1):
            found = hierarchy.chunks(grid, level)
            assert [c.id for c in found] == list(range(len(found)))
            covered = np.zeros(grid.shape, int)
            for chunk in found:
                covered[tuple(slice(a, z) for a, z in zip(chunk.lo, chunk.hi))] += 1
                if level:
                    kids = hierarchy.children(chunk, grid)
                    assert sum(np.prod(np.subtract(k.hi, k.lo)) for k in kids) == \
                        np.prod(np.subtract(chunk.hi, chunk.lo))
                    added += hierarchy.inner_faces(chunk, grid)
            assert (covered == 1).all()
        faces = [(b.id, axis) for b in grid for axis, _ in grid.neighbours_before(b)]
        assert sorted(added) == sorted(faces)


def _kept_job_folder(monkeypatch):
    """Keeps the job folder that segment_blockwise would delete; returns a dict for it."""
    kept = {}
    monkeypatch.setattr(store, "remove", lambda folder: kept.setdefault("folder", folder))
    return kept


def _one_agglomeration(folder, stride, scoring, thresholds):
    """The tables of one whole-graph agglomeration of a job's stitched graph."""
    from emkit.postprocess.agglomeration import apply_merges
    from emkit.postprocess.graph_kernels import roots

    with np.load(folder / "tables.npz") as tables:
        offsets, counts = tables["offsets"], tables["counts"]
    n = int(counts.sum()) + 1
    parts = {k: [] for k in ("u", "v", "count", "total", "hist", "joined_u", "joined_v")}
    for b in range(len(counts)):
        with np.load(folder / "graphs" / f"{b}.npz") as graph:
            for key in ("u", "v"):
                parts[key].append(graph[key] + offsets[b])
            for key in ("count", "total", "hist"):
                parts[key].append(graph[key])
        with np.load(folder / "faces" / f"{b}.npz") as face:
            for key in ("u", "v", "joined_u", "joined_v"):
                parts[key].append(stitch.global_to_node(face[key], offsets, stride))
            for key in ("count", "total", "hist"):
                parts[key].append(face[key])
    edges = {k: np.concatenate(v) for k, v in parts.items()}
    parent = np.arange(n)  # fragment pieces joined across faces are one node
    apply_merges(parent, edges["joined_u"], edges["joined_v"], 0, edges["joined_u"].size)
    node = roots(parent)
    u, v = node[edges["u"]], node[edges["v"]]
    keys, inverse = np.unique(np.minimum(u, v) * n + np.maximum(u, v), return_inverse=True)
    hist = None
    if scoring == "quantile":
        hist = np.zeros((keys.size, edges["hist"].shape[1]), np.uint32)
        np.add.at(hist, inverse, edges["hist"])
    rag = RegionGraph(keys // n, keys % n, np.bincount(inverse, edges["count"]).astype(int),
                      np.bincount(inverse, edges["total"]), np.zeros(keys.size, np.float32),
                      hist)
    inner = rag.u != rag.v
    rag = RegionGraph(rag.u[inner], rag.v[inner], rag.count[inner], rag.total[inner],
                      rag.maximum[inner], None if hist is None else hist[inner])
    a, b, score = history_indices(rag, n, scoring=scoring, quantile=0.5, stop=max(thresholds))
    return [lut[node] for lut in threshold_luts(a, b, score, n, np.asarray(thresholds))]


# Equal scores may be merged in another order by the two; more bins than the default
# make quantile scores tie less often.
@pytest.mark.parametrize("scoring, bins", [("mean", 64), ("quantile", 256)])
def test_hierarchical_agglomeration_is_the_one_of_the_whole_graph(tmp_path, client,
                                                                  monkeypatch, scoring, bins):
    _, _, spec = _toy_affs(tmp_path)
    kept = _kept_job_folder(monkeypatch)
    thresholds = (0.3, 0.5, 0.7)
    summary = segment_blockwise(spec, f"{tmp_path}/seg.zarr:" + "{threshold}",
                                block_shape=(20, 24, 24), halo=4, client=client,
                                progress=False, thresholds=thresholds, scoring=scoring,
                                bins=bins)
    folder = kept["folder"]
    assert summary["levels"] == 3 and summary["largest_chunk_edges"] < summary["edges"]
    expected = _one_agglomeration(folder, 20 * 24 * 24, scoring, thresholds)
    for i, table in enumerate(expected):
        got = np.load(folder / f"lut-{i}.npy")
        pairs = set(zip(table.tolist(), got.tolist()))  # the same partition of the nodes
        assert len(pairs) == len(np.unique(table)) == got.max() + 1, thresholds[i]


def test_dust_removes_whole_objects_across_block_faces(tmp_path, client):
    labels = np.ones((4, 6, 16), np.int64)
    labels[..., 8:] = 2
    labels[1:3, 1:3, 4:12] = 3  # 32 voxels, 16 in each block, 24 in each read region
    labels[1:3, 3:5, 6:10] = 4  # 16 voxels
    affs = seg_to_affinities(labels)[0]
    spec = f"{tmp_path}/affs.zarr"
    write_volume(spec, np.moveaxis(affs, -1, 0), chunks=(3, 4, 6, 8))
    options = {"dust_size": 30, "size_threshold": 0}
    summary = segment_blockwise(spec, tmp_path / "seg.zarr", block_shape=(4, 6, 8), halo=2,
                                client=client, progress=False, **options)
    seg = read_volume(tmp_path / "seg.zarr")
    expected = np.where(labels == 4, 0, labels)
    assert summary["segments"] == [3] and set(np.unique(seg)) == {0, 1, 2, 3}
    assert len(set(zip(seg.ravel().tolist(), expected.ravel().tolist()))) == 4  # exact
    # the in-memory segmentation agrees here (object 3 is one fragment in memory) ...
    [whole] = segment_affinities(affs, **options)
    assert len(set(zip(seg.ravel().tolist(), whole.ravel().tolist()))) == 4
    # ... while dust taken per block, on its read region, would lose object 3
    grid = block_grid(labels.shape, (4, 6, 8), context=((2, 2, 2), (2, 2, 2)))
    for block in grid:
        read = grid.read_clipped(block)
        inside = tuple(slice(w.start - r.start, w.stop - r.start)
                       for w, r in zip(block.write, read))
        dusted = affinity_watershed(affs[read], **options)[inside]
        assert (dusted[labels[block.write] == 3] == 0).all()


def test_segment_resumes_a_relabelling_with_several_thresholds(tmp_path, client, monkeypatch):
    _, _, spec = _toy_affs(tmp_path)
    options = {"block_shape": (20, 24, 24), "halo": 4, "client": client, "progress": False,
               "thresholds": (0.3, 0.5, 0.7), "dust_size": 50}
    out = f"{tmp_path}/seg.zarr:" + "{threshold}"
    real = bw_segment.relabel_block
    monkeypatch.setattr(bw_segment, "relabel_block", dying_after(25, real, tmp_path / "first"))
    with pytest.raises(BlockFailed, match="worker killed"):
        segment_blockwise(spec, out, **options)
    folder = store.job_folder(out)
    done = [settled_done(folder, f"relabel-{i}") for i in range(3)]
    assert len(done[0]) == 18 and len(done[1]) < 18 and not done[2]
    with pytest.raises(InputError, match="other parameters.*options"):
        segment_blockwise(spec, out, **{**options, "thresholds": (0.3, 0.5)})
    monkeypatch.setattr(bw_segment, "relabel_block", counting(real, tmp_path / "rerun"))
    summary = segment_blockwise(spec, out, **options)
    missing = 54 - sum(map(len, done))
    assert summary["run"] == {"fragments": 0, "faces": 0, "agglomerate": 0, "tables": 0,
                              "relabel": missing}
    assert len(called(tmp_path / "rerun")) == missing and summary["resumed"]
    monkeypatch.setattr(bw_segment, "relabel_block", real)
    again = segment_blockwise(spec, f"{tmp_path}/again.zarr:" + "{threshold}", **options)
    assert again["segments"] == summary["segments"]
    for first, second in zip(summary["outputs"], again["outputs"]):
        np.testing.assert_array_equal(read_volume(first), read_volume(second))
    sizes = np.bincount(read_volume(summary["outputs"][1]).ravel())
    assert sizes[1:].min() >= 50 and sizes[0] > 0  # whole objects under 50 voxels are gone


def test_memory_check_names_the_chunk_and_a_limit_that_would_do():
    grid = block_grid((40, 48, 48), (20, 24, 24))
    [top] = hierarchy.chunks(grid, hierarchy.top_level(grid.shape))
    need = hierarchy.chunk_memory(1000, 5000)
    assert need == 5000 * hierarchy.BYTES_PER_EDGE + 1000 * hierarchy.BYTES_PER_REGION + \
        hierarchy.BYTES_ONCE
    assert hierarchy.chunk_memory(1000, 5000, bins=64) == need + 5000 * 64 * hierarchy.BYTES_PER_BIN
    hierarchy.check_memory(top, 1000, 5000, 0, memory_limit=(need + 100) / 0.5, in_use=100,
                           fraction=0.5)  # fits
    with pytest.raises(InputError) as error:
        hierarchy.check_memory(top, 1000, 5000, 0, memory_limit=need, in_use=2**30)
    message = str(error.value)
    for part in ("agglomerate-1: chunk (0, 0, 0)", "0:40, 0:48, 0:48", "1,000 regions",
                 "5,000 edges", "95% of its memory limit", "--memory-limit", "resumes"):
        assert part in message, part
    enough = float(message.split("about ")[2].split(" GiB")[0])
    assert enough * 2**30 * 0.95 >= 2**30 + need  # the limit it names would do


def test_worker_memory_limit_is_read_inside_a_worker_only(client):
    assert bw_cluster.worker_memory_limit() is None
    limit, fraction = client.submit(bw_cluster.worker_memory_limit, pure=False).result()
    assert limit > 2**20 and fraction == 0.95


def test_segment_refuses_a_chunk_over_the_memory_limit_then_resumes(tmp_path, client,
                                                                     monkeypatch):
    _, _, spec = _toy_affs(tmp_path)
    options = {"block_shape": (20, 24, 24), "halo": 4, "client": client, "progress": False}
    monkeypatch.setattr(bw_cluster, "worker_memory_limit", lambda: (2**20, 0.95))
    with pytest.raises(InputError, match=r"agglomerate-0: chunk \(.*regions and .* edges.*"
                                         r"--memory-limit"):
        segment_blockwise(spec, tmp_path / "seg.zarr", **options)
    # tasks that a worker took before the abort also meet the limit: none is done
    assert not settled_done(store.job_folder(tmp_path / "seg.zarr"), "agglomerate-0")
    monkeypatch.setattr(bw_cluster, "worker_memory_limit", lambda: None)
    summary = segment_blockwise(spec, tmp_path / "seg.zarr", **options)
    assert summary["resumed"] and summary["run"]["fragments"] == 0
    assert summary["run"]["agglomerate"] == 18 + 4 + 1


def test_chunk_size_counts_what_the_chunk_reads(tmp_path, client, monkeypatch):
    _, _, spec = _toy_affs(tmp_path)
    kept = _kept_job_folder(monkeypatch)
    segment_blockwise(spec, tmp_path / "seg.zarr", block_shape=(20, 24, 24), halo=4,
                      client=client, progress=False)
    folder = kept["folder"]
    job = bw_segment.SegmentJob(affs=spec, folder=str(folder),
                                grid=block_grid((40, 72, 72), (20, 24, 24),
                                                context=((4,) * 3, (4,) * 3)))
    for chunk in hierarchy.chunks(job.grid, 1) + hierarchy.chunks(job.grid, 0)[:3]:
        regions, edges = bw_segment.chunk_size(chunk, job)
        graph = bw_segment.chunk_graph(chunk, job)
        united = len(graph.get("joined_b", ()))  # pieces of a fragment united: one region
        assert regions == len(graph["nodes"]) + united and edges >= len(graph["u"]) > 0


def test_npz_shape_reads_shapes_from_the_header(tmp_path):
    path = tmp_path / "a.npz"
    store.save_npz_atomic(path, u=np.arange(7), hist=np.zeros((5, 3), np.uint32), n=3)
    assert store.npz_shape(path, "u") == (7,) and store.npz_shape(path, "hist") == (5, 3)
    assert store.npz_shape(path, "n") == ()


def test_threshold_tables_number_segments_by_their_least_node():
    rng = np.random.default_rng(0)
    n = 200
    a, b = rng.integers(1, n, 150), rng.integers(1, n, 150)
    score = rng.random(150)
    sizes = rng.integers(1, 9, n)
    from emkit.postprocess.agglomeration import apply_merges
    from emkit.postprocess.graph_kernels import roots

    for given in (score, np.sort(score)):  # unsorted, and already in order
        order = np.argsort(given, kind="stable")
        got = hierarchy.threshold_tables(a, b, given, n, [0.3, 0.7], sizes, dust_size=12)
        for threshold, table in zip([0.3, 0.7], got):
            parent = np.arange(n)
            upto = int(np.searchsorted(given[order], threshold))
            apply_merges(parent, a[order], b[order], 0, upto)
            root = roots(parent)
            expected = np.zeros(n, np.int64)
            expected[1:] = np.unique(root[1:], return_inverse=True)[1] + 1
            voxels = np.bincount(expected, weights=sizes)
            keep = voxels >= 12
            keep[0] = False
            renumber = np.zeros(keep.size, np.int64)
            renumber[keep] = np.arange(1, keep.sum() + 1)
            np.testing.assert_array_equal(table, renumber[expected])


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
    write_volume(tmp_path / "r.zarr", np.zeros((8, 8, 8), np.uint8), chunks=(4, 4, 4))
    with pytest.raises(InputError, match=r"\['colour'\]; allowed: tile_shape, overlap"):
        predict_blockwise(tiny_model, tmp_path / "r.zarr", tmp_path / "p.zarr", colour=1)
    with pytest.raises(InputError, match="blockwise jobs write Zarr"):
        segment_blockwise(tmp_path / "a.zarr", tmp_path / "s.tif")
    with pytest.raises(InputError, match=r"2 thresholds.*\{threshold\}"):
        segment_blockwise(tmp_path / "a.zarr", tmp_path / "s.zarr", thresholds=(0.3, 0.5))
    with pytest.raises(InputError, match="threshold or thresholds, not both"):
        segment_blockwise(tmp_path / "a.zarr", tmp_path / "s.zarr", threshold=0.3,
                          thresholds=(0.5,))
    with pytest.raises(InputError, match=r"\['colour'\].*allowed: thresholds, scoring"):
        segment_blockwise(tmp_path / "a.zarr", tmp_path / "s.zarr", colour=1)
    with pytest.raises(InputError, match="scoring must be one of"):
        segment_blockwise(tmp_path / "a.zarr", tmp_path / "s.zarr", scoring="max")
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
    assert [seg.max()] == expected["segments"]
    assert main(argv) == 2  # exists, no --overwrite
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--thresholds", "0.3,0.5"]) == 2
    assert "{threshold}" in capsys.readouterr().err
    several = ["--output", f"{tmp_path}/many.zarr:" + "{threshold}", "--thresholds", "0.3,0.5",
               "--scoring", "quantile", "--bins", "32", "--dust-size", "20"]
    assert main([*argv, *several]) == 0
    err = capsys.readouterr().err
    expected = segment_blockwise(spec, f"{tmp_path}/api2.zarr:" + "{threshold}",
                                 block_shape=(20, 24, 24), halo=4, client=client,
                                 progress=False, thresholds=(0.3, 0.5), scoring="quantile",
                                 bins=32, dust_size=20)
    for t, segments in zip(("0.3", "0.5"), expected["segments"]):
        assert f"{segments} at {t}" in err
        np.testing.assert_array_equal(read_volume(f"{tmp_path}/many.zarr:{t}"),
                                      read_volume(f"{tmp_path}/api2.zarr:{t}"))


def test_cli_help_describes_blockwise(capsys):
    from emkit.cli.main import main

    for command in ("predict", "segment"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "--blockwise" in text and "--scheduler ADDRESS" in text and "--workers N" in text
