"""Tests for emkit.sampling: shapes from tiny Keras models, exact crops and targets,
reproducible batches whatever the workers, and whole-volume validation tiles."""

import doctest

import keras
import numpy as np
import pytest
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

import emkit.sampling
import emkit.sampling.crops
import emkit.sampling.targets
import emkit.sampling.tiles
from emkit.augment import apply_augmentations
from emkit.errors import InputError
from emkit.sampling import (
    PatchSampler,
    TargetSpec,
    ValidationSampler,
    class_weights,
    iter_input_batches,
    labels_to_ids,
    make_targets,
    measure_class_frequency,
    model_shapes,
    tile_blocks,
)
from emkit.targets import seg_to_affinities, seg_to_boundaries


def conv_model(input_shape, out_channels=1, kernel=3):
    """One valid convolution: the output is ``kernel - 1`` smaller on each convolved axis."""
    inputs = keras.Input((*input_shape, 1))
    layer = keras.layers.Conv2D if len(input_shape) == 2 else keras.layers.Conv3D
    return keras.Model(inputs, layer(out_channels, kernel, padding="valid")(inputs))


def blocks_volume(shape=(6, 24, 24), size=4, seed=0):
    """Labels: blocks of ``size`` pixels with random ids per section; raw = uint8 codes."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    coarse = rng.integers(1, 200, size=(z, -(-y // size), -(-x // size)), dtype=np.uint64)
    labels = coarse.repeat(size, 1).repeat(size, 2)[:, :y, :x] * 1000
    raw = rng.integers(0, 256, size=shape, dtype=np.uint8)
    return raw, labels


@pytest.fixture(scope="module")
def model_2d():
    return conv_model((9, 9))


@pytest.fixture(scope="module")
def model_3d():
    return conv_model((3, 9, 9), out_channels=3, kernel=(1, 3, 3))


@pytest.mark.parametrize(
    "module", [emkit.sampling, emkit.sampling.tiles, emkit.sampling.crops, emkit.sampling.targets]
)
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


# ----------------------------------------------------------------------------- shapes


def test_model_shapes_come_from_the_model(model_2d, model_3d):
    shapes = model_shapes(model_2d)
    assert (shapes.ndim, shapes.input_shape, shapes.output_shape) == (2, (9, 9), (7, 7))
    assert shapes.input_zyx == (1, 9, 9) and shapes.margin_zyx == (0, 1, 1)
    shapes = model_shapes(model_3d)
    assert shapes.output_zyx == (3, 7, 7) and shapes.out_channels == 3


def test_model_shapes_errors_say_what_is_wrong():
    inputs = keras.Input((None, None, 1))
    with pytest.raises(InputError, match="unknown size"):
        model_shapes(keras.Model(inputs, keras.layers.Conv2D(1, 3)(inputs)))
    inputs = keras.Input((8, 8, 1))
    with pytest.raises(InputError, match="cannot be centred"):
        model_shapes(keras.Model(inputs, keras.layers.Conv2D(1, 2)(inputs)))
    inputs = keras.Input((8, 8, 2))
    with pytest.raises(InputError, match="2 input channels"):
        model_shapes(keras.Model(inputs, keras.layers.Conv2D(1, 3)(inputs)))


# ----------------------------------------------------------------------------- targets


def test_labels_to_ids_for_each_label_kind():
    isbi = np.array([[[0, 255, 255]]], np.uint8)
    assert labels_to_ids(isbi, label_kind="isbi").tolist() == [[[1, 2, 2]]]
    seg = np.array([[[5, 9, 0, 5]]], np.uint64)
    assert labels_to_ids(seg).tolist() == [[[1, 2, 0, 1]]]
    assert labels_to_ids(seg, unlabelled_value=None).tolist() == [[[1, 2, 3, 1]]]
    assert labels_to_ids(seg, unlabelled_value=9).tolist() == [[[1, 0, 3, 1]]]
    known = np.array([[[True, False, True, True]]])
    assert labels_to_ids(seg, known=known).tolist() == [[[1, 0, 0, 1]]]


def test_boundary_targets_mask_unlabelled_voxels_and_their_neighbours():
    ids = np.repeat(np.array([[[1, 1, 1, 2, 2, 0, 3, 3]]], np.uint8), 3, axis=1)
    spec = TargetSpec(kind="boundaries", ndim=2, thickness=1)
    target, known = make_targets(ids, spec, (1, 1, 6))
    assert target[..., 0].tolist() == [[0, 1, 1, 1, 1, 1]]
    assert known[..., 0].tolist() == [[1, 1, 1, 0, 0, 0]]
    isbi = TargetSpec(kind="boundaries", ndim=2, label_kind="isbi")
    target, known = make_targets(np.array([[[1, 2, 0]]], np.uint8), isbi, (1, 1, 3))
    assert target[..., 0].tolist() == [[1, 0, 0]] and known[..., 0].tolist() == [[1, 1, 0]]


def test_affinity_targets_use_the_context_around_the_output_window():
    seg = np.random.default_rng(0).integers(0, 3, size=(4, 6, 6)).astype(np.uint8)
    spec = TargetSpec(kind="affinities", ndim=3)
    assert spec.context == (1, 1, 1)
    target, known = make_targets(seg, spec, (2, 4, 4))
    affs, mask = seg_to_affinities(seg)
    assert np.array_equal(target, affs[1:3, 1:5, 1:5])
    assert np.array_equal(known, mask[1:3, 1:5, 1:5])


def test_class_weights_give_each_class_half_the_weight():
    w_boundary, w_interior = class_weights([0.2, 0.0])
    assert w_boundary.tolist() == [2.5, 1.0] and w_interior.tolist() == [0.625, 1.0]
    f = 0.2  # 20 boundary voxels weigh as much as 80 interior ones
    assert 20 * 0.5 / f == pytest.approx(80 * 0.5 / (1 - f))


# ----------------------------------------------------------------------------- sampler


def test_sample_is_the_exact_crop_and_target_at_its_window(model_2d):
    raw, labels = blocks_volume()
    sampler = PatchSampler(raw, labels, model_2d, target="boundaries", batch_size=4)
    for j in range(4):
        sample = sampler.sample(0, j)
        z, y, x = sample.start
        assert np.array_equal(sample.raw[0], raw[z, y - 1:y + 8, x - 1:x + 8] / np.float32(255))
        expected = seg_to_boundaries(labels[z])[y:y + 7, x:x + 7]
        assert np.array_equal(sample.target[..., 0], expected)
        assert sample.weight.min() == 1
    x_batch, y_batch, w_batch = sampler[0]
    assert x_batch.shape == (4, 9, 9, 1) and y_batch.shape == w_batch.shape == (4, 7, 7, 1)
    assert x_batch.dtype == y_batch.dtype == np.float32


def test_targets_are_computed_from_the_augmented_labels(model_2d):
    raw, labels = blocks_volume()
    augment = [{"name": "elastic", "p": 1.0, "sigma": 2, "spacing": 6}, {"name": "rot90"}]
    sampler = PatchSampler(raw, labels, model_2d, augment=augment, seed=3)
    changed = 0
    for j in range(4):
        sample = sampler.sample(1, j)
        rng = sampler.rng(1, j)
        start = sampler.locations.draw(rng)
        raw_box, ids = sampler.read(start)
        _, warped = apply_augmentations(sampler.plan, raw_box, ids, rng)
        assert np.array_equal(sample.ids, warped)
        target, _ = make_targets(warped, sampler.spec, (1, 7, 7))
        assert np.array_equal(sample.target, target)
        bare = sampler.sample(1, j, augment=False)
        changed += not np.array_equal(bare.target, sample.target)
    assert changed > 0


def test_batches_depend_on_seed_epoch_and_index_only(model_2d):
    raw, labels = blocks_volume()
    kwargs = {"augment": ["flip", "elastic", "noise"], "batch_size": 3, "seed": 7}
    a = PatchSampler(raw, labels, model_2d, **kwargs)
    b = PatchSampler(raw, labels, model_2d, **kwargs)
    first = a[1]
    assert all(np.array_equal(u, v) for u, v in zip(first, b[1]))
    assert all(np.array_equal(u, v) for u, v in zip(first, a[1]))
    a.on_epoch_end()
    assert a.epoch == 1 and not np.array_equal(a[1][0], first[0])
    c = PatchSampler(raw, labels, model_2d, epoch=1, **kwargs)
    assert np.array_equal(c[1][0], a[1][0])


def _epochs(sampler, epochs):
    """The batches Keras' PyDataset adapter yields for ``epochs`` epochs."""
    adapter = PyDatasetAdapter(sampler, shuffle=False)
    out = []
    for _ in range(epochs):
        adapter.on_epoch_begin()
        out.append([tuple(np.array(a) for a in batch) for batch in adapter.get_numpy_iterator()])
        adapter.on_epoch_end()
    return out


@pytest.mark.parametrize("workers, multiprocessing", [(2, False), (2, True)])
def test_batches_are_identical_with_0_and_2_workers(model_3d, workers, multiprocessing):
    raw, labels = blocks_volume()
    kwargs = {"target": "affinities", "augment": ["flip", "elastic", "misalign", "noise"],
                  "batch_size": 2, "batches_per_epoch": 3, "seed": 11}
    serial = _epochs(PatchSampler(raw, labels, model_3d, workers=0, **kwargs), 2)
    parallel = _epochs(
        PatchSampler(raw, labels, model_3d, workers=workers, use_multiprocessing=multiprocessing,
                     **kwargs), 2,
    )
    assert len(serial[0]) == 3 and len(parallel[1]) == 3
    for epoch_a, epoch_b in zip(serial, parallel):
        for batch_a, batch_b in zip(epoch_a, epoch_b):
            assert all(np.array_equal(u, v) for u, v in zip(batch_a, batch_b))
    assert not np.array_equal(serial[0][0][0], serial[1][0][0])  # epochs differ


def test_windows_stay_inside_one_run_of_the_given_sections(model_3d):
    raw, labels = blocks_volume((9, 16, 16))
    sections = [0, 1, 2, 3, 5, 6, 7]
    sampler = PatchSampler(raw, labels, model_3d, target="affinities", sections=sections)
    assert sorted(sampler.locations.z_starts.tolist()) == [0, 1, 5]
    for j in range(20):
        sample = sampler.sample(0, j)
        # Affinities in z at the run's end see unknown labels beyond it: masked.
        if sample.start[0] == 1:
            assert sample.weight[2, ..., 0].max() == 1 and sample.weight[0, ..., 0].max() == 1
    with pytest.raises(InputError, match=r"reads 3 consecutive sections; the runs have \[2, 2\]"):
        PatchSampler(raw, labels, model_3d, target="affinities", sections=[0, 1, 5, 6])


def test_sparse_labels_keep_a_labelled_section_in_every_window(model_3d):
    raw, labels = blocks_volume((8, 16, 16))
    sampler = PatchSampler(raw, labels, model_3d, target="affinities", labelled_sections=[4])
    assert sorted(sampler.locations.z_starts.tolist()) == [2, 3, 4]
    for j in range(6):
        sample = sampler.sample(0, j)
        z0 = sample.start[0]
        for k in range(3):
            if z0 + k != 4:
                assert sample.weight[k].max() == 0
        assert sample.weight[4 - z0, ..., 1:].max() == 1  # in-plane edges of section 4


def test_mask_centres_every_window_and_hides_labels(model_2d):
    raw, labels = blocks_volume()
    mask = np.zeros(raw.shape, np.uint8)
    mask[2, 10:14, 5:9] = 1
    sampler = PatchSampler(raw, labels, model_2d, mask=mask)
    assert sampler.locations.count == 16
    for j in range(10):
        sample = sampler.sample(0, j)
        z, y, x = sample.start
        assert mask[z, y + 3, x + 3] == 1
        assert sample.weight[..., 0].sum() <= 16


def test_class_frequency_on_isbi_is_the_membrane_fraction(model_2d):
    from emkit.datasets import load_dataset

    isbi = load_dataset("isbi2012")
    labels = np.asarray(isbi.labels)
    sampler = PatchSampler.from_dataset(
        isbi, model_2d, sections=range(20), balance=True, batches_per_epoch=1
    )
    expected = float(np.mean(labels[:20] == 0))
    assert sampler.class_frequency[0] == pytest.approx(expected, abs=1e-12)
    assert 0.2 < expected < 0.25
    _, _y, w = sampler[0]
    w_boundary, w_interior = class_weights([expected])
    assert set(np.unique(w).tolist()) <= {float(w_boundary[0]), float(w_interior[0])}
    assert measure_class_frequency(sampler)[0] == pytest.approx(expected)


def test_sampler_errors(model_2d, model_3d):
    raw, labels = blocks_volume()
    with pytest.raises(InputError, match="give 2 channel"):
        PatchSampler(raw, labels, model_2d, target="affinities")
    with pytest.raises(InputError, match="single sections"):
        PatchSampler(raw, labels, model_2d, augment=[{"name": "elastic", "mode": "3d"}])
    with pytest.raises(InputError, match="mask have shape"):
        PatchSampler(raw, labels, model_2d, mask=np.ones((2, 2, 2)))


def test_fit_runs_on_the_sampler_with_threads(model_3d):
    raw, labels = blocks_volume()
    sampler = PatchSampler(raw, labels, model_3d, target="affinities", augment=["flip"],
                           batch_size=2, batches_per_epoch=2, workers=2)

    def per_channel_bce(y_true, y_pred):
        return keras.losses.binary_crossentropy(y_true[..., None], y_pred[..., None])

    model = conv_model((3, 9, 9), out_channels=3, kernel=(1, 3, 3))
    model.compile("sgd", per_channel_bce)
    history = model.fit(sampler, epochs=2, verbose=0)
    # Keras resets the data once before the first epoch, then once per epoch.
    assert np.isfinite(history.history["loss"]).all() and sampler.epoch == 3


# ----------------------------------------------------------------------------- validation


def test_tiles_cover_the_volume_and_each_voxel_is_owned_once():
    owned = np.zeros((3, 11, 13), int)
    written = np.zeros_like(owned)
    for block in tile_blocks(owned.shape, (3, 6, 6), (2, 4, 4)):
        owned[block.owned] += 1
        written[block.write] += 1
        assert all(b.stop - b.start == w.stop - w.start
                   for b, w in zip(block.write, block.write_in_output))
    assert (owned == 1).all() and (written >= 1).all()


def test_input_batches_reassemble_the_volume(model_2d):
    raw, _ = blocks_volume((2, 20, 23))
    shapes = model_shapes(model_2d)
    out = np.full(raw.shape, -1.0, np.float32)
    for x, blocks in iter_input_batches(raw, shapes, batch_size=5):
        for window, block in zip(x, blocks):
            pred = window[1:-1, 1:-1, 0][None]  # a model that returns its centre
            out[block.write] = pred[block.write_in_output]
    assert np.array_equal(out, raw / np.float32(255))


def test_validation_sampler_counts_every_voxel_once(model_2d):
    raw, labels = blocks_volume((6, 20, 23))
    val = ValidationSampler(raw, labels, model_2d, sections=[4, 5], batch_size=4, thickness=0)
    assert len(val) == 2 * 3 * 4 // 4  # z: 2 sections, y: 3 tiles, x: 4 tiles
    total = sum(float(val[i][2].sum()) for i in range(len(val)))
    assert total == 2 * 20 * 23
    x, y, _w = val[len(val) - 1]
    assert x.shape[1:] == (9, 9, 1) and y.shape[1:] == (7, 7, 1)
