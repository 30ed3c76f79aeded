"""Tests for emkit.augment: each augmentation on tiny arrays with known answers."""

import doctest

import numpy as np
import pytest

import emkit.augment
import emkit.augment.base
import emkit.augment.catalog
import emkit.augment.defects
import emkit.augment.elastic
import emkit.augment.geometric
from emkit.augment import (
    AUGMENTATIONS,
    Blur,
    BrightnessContrast,
    Clahe,
    DarkBlotch,
    Elastic,
    Flip,
    Gamma,
    Misalign,
    MissingRegion,
    MissingSection,
    Noise,
    Rotate,
    Rotate90,
    Transpose,
    apply_augmentations,
    blotch_factor,
    center_crop,
    choose_augmentations,
    make_augmentation,
    make_augmentations,
    plan_augmentations,
    rotate_yx,
    shift_sections,
    warp,
)
from emkit.errors import InputError


def readonly(arr):
    arr = np.array(arr)
    arr.flags.writeable = False
    return arr


def coded(shape, seed=0):
    """Random ids (uint16, 1..50) and raw = ids / 100, so raw tells which id it came from."""
    ids = np.random.default_rng(seed).integers(1, 51, size=shape).astype(np.uint16)
    return readonly((ids / 100).astype(np.float32)), readonly(ids)


def aligned(raw, ids):
    """True when every raw voxel still equals its label's id / 100."""
    return np.array_equal(raw, (ids / 100).astype(np.float32))


@pytest.mark.parametrize(
    "module",
    [emkit.augment, emkit.augment.base, emkit.augment.defects, emkit.augment.geometric,
     emkit.augment.catalog],
)
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


# ----------------------------------------------------------------------------- registry


def test_registry_builds_every_augmentation_and_round_trips_its_config():
    for name in AUGMENTATIONS:
        aug = make_augmentation(name)
        assert aug.name == name
        assert make_augmentation(aug.config()) == aug


def test_registry_errors_name_the_key_and_the_entry():
    message = r"augment\[1\]: augmentation 'elastic': unknown key 'alpha'"
    with pytest.raises(InputError, match=message):
        make_augmentations(["flip", {"name": "elastic", "alpha": 30}])
    with pytest.raises(InputError, match="name 'wobble' is unknown; allowed: flip"):
        make_augmentations([{"name": "wobble"}])
    with pytest.raises(InputError, match="p must be a probability"):
        make_augmentation({"name": "flip", "p": 1.5})
    with pytest.raises(InputError, match=r"sigma must have low <= high"):
        make_augmentation({"name": "elastic", "sigma": [5, 2]})
    with pytest.raises(InputError, match="mode must be one of"):
        make_augmentation({"name": "elastic", "mode": "2d"})


# ----------------------------------------------------------------------------- plan


def test_plan_adds_margins_from_the_last_augmentation_back():
    augs = [Flip(), Rotate90(), Blur(sigma=1.0), Misalign(max_shift=2)]
    plan = plan_augmentations(augs, (3, 4, 6), (3, 2, 4))
    # misalign +2, blur +3 in y and x; rot90 squares the plane; flip adds nothing.
    assert plan.raw_shapes == ((3, 16, 16), (3, 16, 16), (3, 14, 16), (3, 8, 10), (3, 4, 6))
    assert plan.labels_shapes[0] == (3, 14, 14)
    assert plan.raw_margin == (0, 6, 5)


def test_plan_rejects_crops_that_cannot_share_a_centre():
    with pytest.raises(InputError, match="even number"):
        plan_augmentations([], (1, 5, 5), (1, 2, 2))
    with pytest.raises(InputError, match="y and x differ by an odd number"):
        plan_augmentations([Transpose()], (1, 4, 5))


def test_apply_cuts_back_to_the_wanted_shapes_and_is_reproducible():
    augs = make_augmentations(["flip", "rot90", {"name": "elastic", "p": 1, "sigma": 2},
                                {"name": "misalign", "p": 1, "max_shift": 3}, "blur"])
    plan = plan_augmentations(augs, (4, 10, 10), (4, 6, 6))
    raw, ids = coded(plan.raw_shapes[0])
    ids = center_crop(ids, plan.labels_shapes[0])
    a = apply_augmentations(plan, raw, ids, np.random.default_rng(5))
    b = apply_augmentations(plan, raw, ids, np.random.default_rng(5))
    assert a[0].shape == (4, 10, 10) and a[1].shape == (4, 6, 6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_choose_respects_p_and_max_defects():
    augs = [Flip(p=0.0), Misalign(p=1.0), MissingSection(p=1.0), DarkBlotch(p=1.0)]
    plan = plan_augmentations(augs, (3, 8, 8), max_defects=1)
    for seed in range(20):
        chosen = choose_augmentations(plan, np.random.default_rng(seed))
        assert chosen[0] is False
        assert sum(chosen[1:]) == 1
    unlimited = plan_augmentations(augs, (3, 8, 8))
    assert choose_augmentations(unlimited, np.random.default_rng(0)) == [False, True, True, True]


# ----------------------------------------------------------------------------- geometric


def test_flip_keeps_raw_and_labels_aligned_and_flips_the_drawn_axes():
    raw, ids = coded((2, 3, 4))
    flip = Flip(axes=("z", "x"))
    out_raw, out_ids = flip.apply(raw, ids, {"axes": (0, 2)})
    assert np.array_equal(out_ids, ids[::-1, :, ::-1])
    assert aligned(out_raw, out_ids)
    for seed in range(8):  # any draw keeps them aligned; only z and x may flip
        params = flip.draw(np.random.default_rng(seed), raw.shape)
        assert set(params["axes"]) <= {0, 2}
        assert aligned(*flip.apply(raw, ids, params))


def test_flip_of_concentric_labels_is_the_crop_of_the_flipped_raw():
    raw, ids = coded((1, 6, 6))
    small = center_crop(ids, (1, 2, 4))
    _, out = Flip().apply(raw, small, {"axes": (1, 2)})
    assert np.array_equal(out, center_crop(ids[:, ::-1, ::-1], (1, 2, 4)))


def test_transpose_and_rot90_match_numpy():
    raw, ids = coded((2, 4, 4))
    t_raw, t_ids = Transpose().apply(raw, ids, {})
    assert np.array_equal(t_ids, ids.transpose(0, 2, 1)) and aligned(t_raw, t_ids)
    for k in range(4):
        r_raw, r_ids = Rotate90().apply(raw, ids, {"k": k})
        assert np.array_equal(r_ids, np.rot90(ids, k, axes=(1, 2))) and aligned(r_raw, r_ids)


def test_rotate_by_90_degrees_equals_a_quarter_turn():
    raw, ids = coded((2, 7, 7))
    aug = Rotate(angle=90)
    assert aug.draw(np.random.default_rng(0), raw.shape) == {"angle": 90.0}
    out_raw, out_ids = aug.apply(raw, ids, {"angle": 90.0}, ((2, 5, 5), (2, 3, 3)))
    assert np.array_equal(out_raw, center_crop(np.rot90(raw, 1, axes=(1, 2)), (2, 5, 5)))
    assert np.array_equal(out_ids, center_crop(np.rot90(ids, 1, axes=(1, 2)), (2, 3, 3)))


def test_rotate_keeps_label_values_for_any_dtype():
    big = np.array([2**60 + 1, 2**60 + 3, 5], np.uint64)
    ids = readonly(big[np.random.default_rng(0).integers(0, 3, (1, 9, 9))])
    out = rotate_yx(ids, 33.0, order=0, out_shape=(1, 5, 5))
    assert set(np.unique(out)) <= set(big)


def test_rotate_margin_covers_the_corners():
    # A 10 x 10 crop turned by 45 degrees needs a 10 * sqrt(2) = 14.1 box: 3 more per side.
    assert Rotate(angle=45).margin((1, 10, 10)) == (0, 5, 5)
    assert Rotate(angle=0).margin((1, 10, 10)) == (0, 2, 2)


# ----------------------------------------------------------------------------- elastic


def test_warp_with_a_constant_field_translates_raw_and_labels_together():
    raw = np.arange(10, dtype=np.float32)[None, None, :] * np.ones((1, 3, 1), np.float32)
    displacement = np.zeros((2, 3, 3))
    displacement[1] = 2  # every voxel reads the input 2 pixels to its right
    assert warp(raw, displacement, order=1)[0, 1].tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 0, 0]
    out = warp(raw.astype(np.uint16), displacement, order=0, out_shape=(1, 1, 4))
    assert out.tolist() == [[[5, 6, 7, 8]]]


def test_elastic_moves_concentric_labels_with_raw_through_one_field():
    raw, ids = coded((2, 12, 12))
    labels = center_crop(ids, (2, 6, 6))
    displacement = np.zeros((2, 3, 3))
    displacement[0] = -1  # read one pixel up
    out_raw, out_labels = Elastic(sigma=1).apply(
        raw, labels, {"displacement": displacement}, ((2, 8, 8), (2, 4, 4))
    )
    assert np.array_equal(out_raw, raw[:, 1:9, 2:10])
    assert np.array_equal(out_labels, ids[:, 3:7, 4:8])
    assert aligned(center_crop(out_raw, (2, 4, 4)), out_labels)


def test_elastic_keeps_label_values_and_creates_no_new_ids():
    ids = readonly(np.random.default_rng(1).choice(
        np.array([3, 17, 2**40 + 5, 2**62 + 1], np.uint64), size=(3, 24, 24)
    ))
    raw = readonly(np.random.default_rng(2).random((3, 24, 24), dtype=np.float32))
    aug = Elastic(sigma=(2, 4), spacing=8)
    for seed in range(3):
        params = aug.draw(np.random.default_rng(seed), raw.shape)
        _, out = aug.apply(raw, ids, params, ((3, 10, 10), (3, 10, 10)))
        assert out.dtype == np.uint64
        assert set(np.unique(out)) <= set(np.unique(ids))
        assert not np.array_equal(out, center_crop(ids, (3, 10, 10)))


def test_elastic_displacement_never_exceeds_its_margin():
    aug = Elastic(sigma=5, spacing=4)
    for seed in range(5):
        displacement = aug.draw(np.random.default_rng(seed), (1, 40, 40))["displacement"]
        peak = np.abs(emkit.augment.elastic.spline_coefficients(displacement)).max()
        assert peak <= 15 + 1e-9 < aug.margin((1, 4, 4))[1]


def test_elastic_3d_mode_moves_along_z_and_declares_a_z_margin():
    aug = Elastic(mode="3d", sigma=1, spacing=4, spacing_z=2)
    assert aug.margin((4, 8, 8)) == (5, 5, 5)
    params = aug.draw(np.random.default_rng(0), (6, 10, 10))
    assert params["displacement"].shape[0] == 3


# ----------------------------------------------------------------------------- intensity, blur


def test_intensity_matches_its_formula_per_section_and_leaves_labels():
    raw = readonly(np.full((3, 4, 4), 0.25, np.float32))
    labels = readonly(np.ones((3, 4, 4), np.uint8))
    params = {"sections": {1: {"alpha": 2.0, "beta": 0.1}}}
    out, same = BrightnessContrast().apply(raw, labels, params)
    assert same is labels
    assert np.allclose(out[1], 0.6) and np.array_equal(out[[0, 2]], raw[[0, 2]])
    out, _ = Gamma().apply(raw, labels, {"sections": {0: {"gamma": 2.0}}})
    assert np.allclose(out[0], 0.0625)
    noise = np.full((4, 4), 0.9, np.float32)
    out, _ = Noise().apply(raw, labels, {"sections": {2: {"noise_map": noise}}})
    assert np.allclose(out[2], 1.0)  # clipped to [0, 1]
    ramp = readonly(np.linspace(0.2, 0.4, 64, dtype=np.float32).reshape(1, 8, 8))
    out, _ = Clahe(tile=2).apply(ramp, None, {"sections": {0: {"clip_limit": 4.0}}})
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert out.max() - out.min() > 0.3  # contrast stretched


def test_intensity_draws_one_set_of_parameters_per_section():
    params = BrightnessContrast(section_p=1.0).draw(np.random.default_rng(0), (5, 4, 4))
    alphas = [p["alpha"] for p in params["sections"].values()]
    assert len(alphas) == 5 and len(set(alphas)) == 5
    assert Noise(section_p=0.0).draw(np.random.default_rng(0), (5, 4, 4))["sections"] == {}


def test_blur_changes_only_the_chosen_sections():
    raw = np.zeros((2, 9, 9), np.float32)
    raw[:, 4, 4] = 1
    raw = readonly(raw)
    out, _ = Blur().apply(raw, None, {"sigmas": {1: 1.0}})
    assert np.array_equal(out[0], raw[0])
    assert out[1, 4, 4] < 0.2 and abs(out[1].sum() - 1) < 1e-3
    assert Blur(sigma=(0.5, 2.0)).margin((1, 9, 9)) == (0, 6, 6)


# ----------------------------------------------------------------------------- defects


def test_shift_sections_moves_exactly_the_sections_it_says():
    _raw, ids = coded((3, 7, 7))
    out = shift_sections(ids, {1: (2, -1)}, margin=2)
    assert out.shape == (3, 3, 3)
    assert np.array_equal(out[0], ids[0, 2:5, 2:5])
    assert np.array_equal(out[2], ids[2, 2:5, 2:5])
    # out[z, y, x] == ids[z, margin + y - dy, margin + x - dx]
    assert np.array_equal(out[1], ids[1, 0:3, 3:6])


def test_misalign_translation_and_slip_move_raw_and_labels_together():
    raw, ids = coded((4, 8, 8))
    aug = Misalign(max_shift=2)
    out_raw, out_ids = aug.apply(raw, ids, {"shifts": {2: (1, 1)}})
    assert aligned(out_raw, out_ids)
    assert np.array_equal(out_ids[2], ids[2, 1:5, 1:5])
    assert np.array_equal(out_ids[[0, 1, 3]], ids[[0, 1, 3], 2:6, 2:6])
    for seed in range(10):
        params = aug.draw(np.random.default_rng(seed), raw.shape)
        moved = sorted(params["shifts"])
        assert moved and (len(moved) == 1 or moved == list(range(moved[0], 4)))
        out_raw, out_ids = aug.apply(raw, ids, params)
        assert aligned(out_raw, out_ids)
        still = [z for z in range(4) if z not in params["shifts"]]
        assert np.array_equal(out_ids[still], ids[still, 2:6, 2:6])


def test_misalign_reaches_labels_that_cover_fewer_sections_and_can_spare_them():
    raw, ids = coded((5, 8, 8))
    labels = ids[1:4]  # concentric in z: raw section z is labels section z - 1
    _, out = Misalign(max_shift=2).apply(raw, labels, {"shifts": {2: (0, 2)}})
    assert np.array_equal(out[1], ids[2, 2:6, 0:4])
    _, kept = Misalign(max_shift=2, shift_labels=False).apply(raw, labels, {"shifts": {2: (0, 2)}})
    assert np.array_equal(kept, ids[1:4, 2:6, 2:6])


def test_misalign_and_missing_sections_leave_a_2d_sample_alone():
    raw, _ids = coded((1, 6, 6))
    assert Misalign().draw(np.random.default_rng(0), raw.shape) == {"shifts": {}}
    assert MissingSection().draw(np.random.default_rng(0), raw.shape) == {"sections": {}}


def test_missing_section_blanks_or_duplicates_and_leaves_labels():
    raw, ids = coded((3, 4, 4))
    out, same = MissingSection(value=0.5).apply(
        raw, ids, {"sections": {0: ("blank", None), 2: ("duplicate", 1)}}
    )
    assert same is ids
    assert np.all(out[0] == 0.5) and np.array_equal(out[2], raw[1])
    assert np.array_equal(out[1], raw[1])
    for seed in range(10):
        params = MissingSection(max_sections=2).draw(np.random.default_rng(seed), (3, 4, 4))
        assert 1 <= len(params["sections"]) <= 2
        for z, (mode, source) in params["sections"].items():
            assert mode == "blank" or abs(source - z) == 1 and 0 <= source < 3


def test_missing_region_fills_the_rectangle_it_draws():
    raw = readonly(np.ones((2, 10, 10), np.float32))
    out, _ = MissingRegion().apply(raw, None, {"z": 1, "box": (0.2, 0.5, 0.3, 0.4)})
    expected = np.ones((2, 10, 10), np.float32)
    expected[1, 2:5, 5:9] = 0
    assert np.array_equal(out, expected)


def test_dark_blotch_darkens_its_centre_by_darkness():
    factor = blotch_factor((5, 5), (2, 2), radius=1.0, darkness=0.6)
    assert factor[2, 2] == pytest.approx(0.4) and factor[0, 0] > 0.95
    raw = readonly(np.ones((1, 5, 5), np.float32))
    out, _ = DarkBlotch().apply(raw, None, {"z": 0, "center": (0.5, 0.5), "radius": 1.0,
                                            "darkness": 0.6})
    assert out[0, 2, 2] == pytest.approx(0.4)
