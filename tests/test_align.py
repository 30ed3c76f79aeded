"""emkit.align: transforms, the misalignment generator, the xcorr aligner, metrics, CLI."""

import numpy as np
import pytest

from emkit.align import (
    Transforms,
    align_xcorr,
    apply_transforms,
    compose,
    from_translations,
    identity_transforms,
    invert,
    load_transforms,
    map_points,
    misalign_stack,
    neighbour_ncc,
    normalized_to_affine,
    residual_displacement,
    rigid_matrix,
    save_transforms,
    valid_mask,
)
from emkit.align.xcorr import local_trend
from emkit.cli.main import main
from emkit.errors import InputError, OverwriteError
from emkit.io import read_volume

ISBI = "emkit:isbi2012/train-volume"


@pytest.fixture(scope="module")
def section():
    """A real ISBI 2012 section, 256 x 256, float32."""
    return read_volume(ISBI, roi=np.s_[3, :256, :256]).astype(np.float32)


def shifted_copies(image, offsets, margin):
    """Stack whose section z shows ``image`` displaced by ``offsets[z]``, border cropped.

    The true transform of section z is ``T_z(p) = p + offsets[z]``.
    """
    offsets = np.asarray(offsets, dtype=np.float64)
    stack = np.repeat(image[None], len(offsets), axis=0)
    shape = tuple(n - 2 * margin for n in image.shape)
    return apply_transforms(stack, from_translations(margin - offsets), order=3,
                            output_shape=shape)


def centre_shifts(transforms, shape):
    centre = np.array([(n - 1) / 2 for n in shape])
    shifts = map_points(transforms, centre[None])[:, 0] - centre
    return shifts - shifts.mean(axis=0)


# ---------------------------------------------------------------- recovering translations


def test_recovers_integer_and_subpixel_shifts_of_a_real_section(section):
    offsets = np.array([[0, 0], [3, -2], [5.5, 1.25], [2.3, -4.7], [-6, 3], [0.45, 0.8]])
    stack = shifted_copies(section, offsets, margin=12)
    estimated = align_xcorr(stack, drift_sigma=None)
    error = centre_shifts(estimated, stack.shape[1:]) - (offsets - offsets.mean(axis=0))
    assert np.abs(error).max() < 0.5
    assert np.abs(error).max() < 0.1  # in fact much better on identical content


def test_recovers_known_shifts_between_real_neighbouring_sections():
    # Real neighbours differ (ISBI's own sections are offset by pixels): what must come
    # out is the known shift added to each section, on top of their natural offsets.
    raw = read_volume(ISBI, roi=np.s_[0:5, :280, :280]).astype(np.float32)
    offsets = np.array([[0, 0], [4, -3], [-2.5, 1.5], [6.25, 2.75], [-1.2, -5.6]])
    margin = 12
    shape = (280 - 2 * margin,) * 2
    plain = raw[:, margin:-margin, margin:-margin]
    moved = apply_transforms(raw, from_translations(margin - offsets), order=3,
                             output_shape=shape)
    natural = centre_shifts(align_xcorr(plain, drift_sigma=None), shape)
    found = centre_shifts(align_xcorr(moved, drift_sigma=None), shape)
    error = (found - natural) - (offsets - offsets.mean(axis=0))
    assert np.abs(error).max() < 0.5


def test_aligning_an_aligned_stack_is_the_identity(section):
    stack = np.repeat(section[None, :128, :128].astype(np.uint8), 4, axis=0)
    for refine in ("none", "affine", "elastic"):
        transforms = align_xcorr(stack, refine=refine, block_size=64)
        assert np.abs(transforms.matrices - np.eye(3)).max() < 1e-6, refine
        if transforms.fields is not None:
            assert np.abs(transforms.fields).max() < 0.05, refine
        assert np.array_equal(apply_transforms(stack, transforms), stack), refine


def test_drift_regularization_leaves_no_trend(section):
    # Smooth drift (20 px end to end in x, a gentle curve in y) plus jitter: with
    # drift_sigma the aligner corrects the jitter only; the transforms carry no trend.
    z = np.arange(12)
    drift = np.stack([0.05 * (z - 5.5) ** 2 - 1, 1.8 * z], axis=-1)
    jitter = np.random.default_rng(0).normal(0, 1.5, (12, 2))
    stack = shifted_copies(section, drift + jitter, margin=26)
    shape = stack.shape[1:]
    regularized = centre_shifts(align_xcorr(stack, drift_sigma=3), shape)
    slope = np.polyfit(z, regularized, 1)[0]
    assert np.abs(slope).max() < 0.1  # pixels per section; the drift has 1.8
    expected = jitter - local_trend(jitter, 3)  # the jitter, less what looks like drift
    assert np.abs(regularized - (expected - expected.mean(axis=0))).max() < 0.5
    chained = centre_shifts(align_xcorr(stack, drift_sigma=None), shape)
    assert np.polyfit(z, chained, 1)[0][1] > 1.7  # the full chain follows the drift


def test_affine_refinement_recovers_a_rotation(section):
    image = read_volume(ISBI, roi=np.s_[3, :320, :320]).astype(np.float32)
    shape = (256, 256)
    centre = [(n - 1) / 2 for n in shape]
    angles = [0.0, 2.0, -1.5, 1.0]
    truth = Transforms(np.stack([rigid_matrix(rotation_deg=a, translation=(1.5 * i, -i),
                                              center=centre) for i, a in enumerate(angles)]))
    crop = from_translations(np.full((4, 2), 32.0))
    stack = apply_transforms(np.repeat(image[None], 4, 0), compose(crop, invert(truth)),
                             order=3, output_shape=shape)
    translated = residual_displacement(align_xcorr(stack, drift_sigma=None), truth, shape=shape)
    affine = residual_displacement(align_xcorr(stack, refine="affine", drift_sigma=None),
                                   truth, shape=shape)
    assert translated.mean > 1.0
    assert affine.mean < 0.3 < translated.mean / 3


# ---------------------------------------------------------------- transforms


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    transforms = Transforms(np.stack([rigid_matrix(rotation_deg=3, translation=(1, 2))] * 3),
                            rng.normal(0, 1, (3, 8, 9, 2)))
    for name in ("t.h5", "t.npz"):
        path = save_transforms(tmp_path / name, transforms, attrs={"seed": 1})
        loaded = load_transforms(path)
        assert np.array_equal(loaded.matrices, transforms.matrices)
        assert np.array_equal(loaded.fields, transforms.fields)
        assert loaded.matrices.dtype == np.float64 and loaded.fields.dtype == np.float32
        with pytest.raises(OverwriteError, match=name):
            save_transforms(path, transforms)
    affine = identity_transforms(2)
    save_transforms(tmp_path / "a.npz", affine)
    assert load_transforms(tmp_path / "a.npz").fields is None
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", matrices=np.eye(3)[None])
    with pytest.raises(InputError, match="other.npz.*not an emkit transforms file"):
        load_transforms(tmp_path / "other.npz")
    with pytest.raises(InputError, match="must end in"):
        save_transforms(tmp_path / "t.tif", identity_transforms(1))


def test_compose_and_invert_on_points():
    rng = np.random.default_rng(2)
    fields = np.stack([np.full((32, 32, 2), 0.0)] * 2).astype(np.float32)
    fields[..., 0] = np.linspace(-1, 1, 32)[None, :, None]  # smooth field
    a = Transforms(np.stack([rigid_matrix(rotation_deg=5, translation=(2, -1))] * 2), fields)
    b = from_translations([[1.0, 2.0], [-3.0, 0.5]])
    points = rng.uniform(4, 27, (10, 2))
    assert np.allclose(map_points(compose(a, b), points),
                       map_points(a, map_points(b, points)), atol=1e-5)
    assert np.allclose(map_points(compose(a, invert(a)), points), points, atol=1e-3)
    assert np.allclose(map_points(compose(b, invert(b)), points), points, atol=1e-12)


def test_apply_then_inverse_recovers_the_interior(section):
    stack = section[None, :96, :96].astype(np.uint8)
    shift = from_translations([[3.0, -5.0]])
    back = apply_transforms(apply_transforms(stack, shift), invert(shift))
    assert np.array_equal(back[:, 8:-8, 8:-8], stack[:, 8:-8, 8:-8])  # whole pixels: exact
    turn = Transforms(rigid_matrix(rotation_deg=4, translation=(0.3, 0.7),
                                   center=(47.5, 47.5))[None])
    smooth = apply_transforms(apply_transforms(stack, turn, order=3), invert(turn), order=3)
    interior = np.s_[:, 16:-16, 16:-16]
    assert np.abs(smooth[interior].astype(float) - stack[interior]).mean() < 3.0


def test_labels_warp_by_nearest_neighbour():
    labels = np.arange(1, 17, dtype=np.uint64).reshape(1, 4, 4) + np.uint64(2**60)
    out = apply_transforms(labels, from_translations([[1.0, 0.0]]), order=0)
    assert out.dtype == np.uint64
    assert np.array_equal(out[0, :3], labels[0, 1:]) and (out[0, 3] == 0).all()


def test_normalized_to_affine_matches_the_spatial_transformer_convention():
    # theta translating by +1 in normalized x moves half the width: (X - 1) / 2 pixels.
    theta = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
    transforms = normalized_to_affine(theta, (5, 9))
    assert np.allclose(map_points(transforms, [[2.0, 3.0]]), [[[2.0, 7.0]]])


# ---------------------------------------------------------------- generator


def test_generator_is_seeded_and_its_truth_undoes_it():
    raw = read_volume(ISBI, roi=np.s_[0:4, :160, :160])
    labels = read_volume("emkit:isbi2012/train-labels", roi=np.s_[0:4, :160, :160])
    first = misalign_stack(raw, labels=labels, seed=3)
    again = misalign_stack(raw, labels=labels, seed=3)
    assert np.array_equal(first.raw, again.raw)
    assert not np.array_equal(first.raw, misalign_stack(raw, seed=4).raw[:, :first.raw.shape[1],
                                                                           :first.raw.shape[2]])
    m = first.margin
    assert first.raw.shape == (4, 160 - 2 * m, 160 - 2 * m) and first.raw.dtype == raw.dtype
    assert first.transforms.shape == first.raw.shape[1:]
    assert np.abs(first.transforms.matrices - np.eye(3)).max() > 0.1  # it moved
    valid = valid_mask(first.transforms, first.raw.shape[1:])
    assert valid.mean() > 0.8
    back = apply_transforms(first.raw, first.transforms, order=1)
    original = first.crop(raw).astype(float)
    error = np.abs(back - original)[valid].mean()
    assert error < 4.0 < np.abs(first.raw - original).mean()  # interpolation error only
    labels_back = apply_transforms(first.labels, first.transforms, order=0)
    assert (labels_back == first.crop(labels))[valid].mean() > 0.99


def test_generator_rejects_a_flat_image():
    with pytest.raises(InputError, match=r"\(z, y, x\) stack, got shape \(64, 64\)"):
        misalign_stack(np.zeros((64, 64)))


# ---------------------------------------------------------------- metrics


def test_ncc_of_identical_and_opposite_sections():
    section = np.arange(16.0).reshape(4, 4)
    assert neighbour_ncc(np.stack([section, section])).tolist() == [1.0]
    assert neighbour_ncc(np.stack([section, -section])).tolist() == [-1.0]
    assert neighbour_ncc(np.stack([section, 2 * section + 1]), sigma=0.0).tolist() == [1.0]
    valid = np.ones((2, 4, 4), bool)
    valid[1, :, :3] = False  # one column in common: still identical there
    assert neighbour_ncc(np.stack([section, section]), valid=valid).tolist() == [1.0]


def test_residual_of_the_truth_is_zero_and_a_global_motion_is_removed():
    shape = (65, 65)
    truth = from_translations([[0, 0], [2, 1], [-1, 3]])
    assert residual_displacement(truth, truth, shape=shape).max == 0.0
    # The same alignment, with the whole stack moved and turned: still 0.
    moved = compose(truth, Transforms(np.stack([rigid_matrix(rotation_deg=2, translation=(
        3, -4), center=(32, 32))] * 3)))
    result = residual_displacement(moved, truth, shape=shape)
    assert result.max < 1e-6
    assert result.offset_rotation_deg == pytest.approx(-2, abs=1e-6)
    # One section off by (3, 4): 5 px there, less 1/3 taken by the global offset.
    wrong = from_translations([[0, 0], [5, 5], [-1, 3]])
    per_section = residual_displacement(wrong, truth, shape=shape).per_section
    assert per_section == pytest.approx([5 / 3, 10 / 3, 5 / 3], abs=1e-9)


# ---------------------------------------------------------------- CLI


@pytest.fixture
def small_stack(tmp_path):
    import tifffile

    raw = read_volume(ISBI, roi=np.s_[0:4, :160, :160])
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "flat.tif", raw[0])
    return tmp_path


def test_cli_misalign_run_score_round_trip(small_stack, capsys):
    d = small_stack
    assert main(["align", "misalign", str(d / "raw.tif"), "--output", f"{d}/mis.h5:raw",
                 "--transforms", str(d / "true.h5"), "--seed", "1"]) == 0
    assert main(["align", "run", f"{d}/mis.h5:raw", "--output", f"{d}/out.h5:raw",
                 "--transforms", str(d / "est.npz"), "--refine", "affine"]) == 0
    assert "s per section" in capsys.readouterr().err
    assert main(["align", "score", str(d / "est.npz"), "--truth", str(d / "true.h5"),
                 "--json"]) == 0
    import json

    scores = json.loads(capsys.readouterr().out)
    assert 0 <= scores["residual_mean_px"] < 5 and scores["points"] > 0
    assert main(["align", "score", str(d / "true.h5"), "--truth", str(d / "true.h5"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["residual_max_px"] == 0.0
    assert main(["align", "score", f"{d}/out.h5:raw", "--json"]) == 0
    assert 0 < json.loads(capsys.readouterr().out)["ncc"] <= 1
    assert main(["align", "apply", f"{d}/mis.h5:raw", "--transforms", str(d / "true.h5"),
                 "--output", f"{d}/out.h5:truth"]) == 0
    # refuses to overwrite, naming the output
    assert main(["align", "run", f"{d}/mis.h5:raw", "--output", f"{d}/out.h5:raw"]) == 2
    assert "out.h5:raw' exists; pass --overwrite" in capsys.readouterr().err
    assert main(["align", "run", f"{d}/mis.h5:raw", "--output", f"{d}/new.h5:raw",
                 "--transforms", str(d / "est.npz")]) == 2
    assert "est.npz' exists" in capsys.readouterr().err
    assert main(["align", "run", f"{d}/mis.h5:raw", "--output", f"{d}/out.h5:raw",
                 "--overwrite"]) == 0


@pytest.mark.parametrize(("spec", "message"), [
    ("flat.tif", r"expected a 3D \(z, y, x\) volume, got shape \(160, 160\) from 'INPUT .*flat.tif'"),
    ("raw.h5:nope", r"raw.h5"),
])
def test_cli_bad_input_exits_2_naming_the_file(small_stack, capsys, spec, message):
    import re

    import h5py

    with h5py.File(small_stack / "raw.h5", "w") as f:
        f.create_dataset("raw", data=np.zeros((2, 40, 40), np.uint8))
    for command in (["run"], ["misalign", "--transforms", str(small_stack / "t.h5")]):
        assert main(["align", *command[:1], str(small_stack / spec), "--output",
                     f"{small_stack}/o.h5:x", *command[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("emkit: error:") and "\n" not in err
        assert re.search(message, err), err
