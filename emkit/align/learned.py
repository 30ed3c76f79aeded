"""The learned aligner: training pairs, training, and aligning a stack with a pair model.

Training pairs (:class:`PairSampler`): a random crop of a section of a well-aligned
training stack is the reference; the same crop of a neighbouring section (z - 1 or
z + 1), moved by one random motion of :func:`emkit.align.generator.draw_motions`
(translation, rotation, elastic distortion), is the moving image. The motion's
transform is the truth: reference pixel ``p`` sits at ``T(p)`` in the moving crop. The
neighbour's own content differs from the reference, as in real stacks, so the network
learns to align different sections, not to undo a warp of one image.

Aligning (:func:`align_learned`): as :func:`~emkit.align.xcorr.align_xcorr`, section
``z`` is registered to section ``z - 1``, but to its already ALIGNED image: the moving
image is ``raw[z]`` warped by the initial guess ``T_init = P_xcorr after T_{z-1}``
(``P_xcorr`` the cross-correlation translation with ``prealign="xcorr"``, else the
identity), the network predicts the residual ``P`` on the aligned grid, and ``T_z =
T_init after P``. Then the slow trend is removed (:func:`~emkit.align.xcorr.remove_drift`).

Why ``prealign="xcorr"``: a small localization net reaches a few pixels (the flow net's
receptive field is about 2^(depth+1) pixels; the affine net is trained on the motions
of its recipe), while slips in real stacks reach tens of pixels. Cross-correlation
finds large translations cheaply and exactly; the network then corrects what a
translation cannot (rotation, scale, local distortion). Without it the network must
have been trained on slips as large as those of the stack.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from emkit.align import transforms as xforms
from emkit.align.generator import motions_to_transforms
from emkit.align.learned_model import (
    CUSTOM_OBJECTS,
    NCCLoss,
    coordinate_error,
    standardize,
    transform_kind,
)
from emkit.errors import InputError

PREALIGN = ("none", "xcorr")


def draw_pair(stack, rng, *, crop: int, motions: dict):
    """One training pair from a well-aligned ``stack`` (Z, Y, X).

    Args:
        stack: ndarray of shape (Z, Y, X), the well-aligned training sections (Z >= 2).
        rng: a ``numpy.random.Generator``; it picks the section, its neighbour, the
            motion and the crop position.
        crop: crop edge in pixels.
        motions: ``jitter_px, slip_p, slip_px, rotation_deg, elastic_px, elastic_grid``
            (see :func:`emkit.align.generator.draw_motions`).

    Returns:
        ``(moving, reference, coords)``: float32 crops (crop, crop), standardized, and
        the true sampling coordinates (crop, crop, 2) of ``moving`` for each reference pixel.
    """
    from emkit.align.generator import draw_motions

    z = int(rng.integers(len(stack)))
    neighbours = [n for n in (z - 1, z + 1) if 0 <= n < len(stack)]
    n = int(rng.choice(neighbours))
    drawn = draw_motions(1, seed=int(rng.integers(2**31)), drift_px=0.0,
                         jitter_px=motions["jitter_px"], slip_p=0.0,
                         rotation_deg=motions["rotation_deg"], elastic_px=motions["elastic_px"],
                         elastic_grid=motions["elastic_grid"])
    # One section: the mean over z was removed, so draw the translation here.
    shift = rng.normal(0.0, motions["jitter_px"], 2)
    if rng.random() < motions["slip_p"]:
        shift += rng.uniform(-motions["slip_px"], motions["slip_px"], 2)
    drawn["translations"] = shift[None]
    truth = motions_to_transforms(drawn, (crop, crop))
    radius = np.hypot(crop, crop) / 2
    bound = (np.abs(shift).max() + np.deg2rad(abs(drawn["angles_deg"][0])) * radius
             + (0 if drawn["elastic"] is None else np.abs(drawn["elastic"]).max()))
    margin = int(np.ceil(bound)) + 2
    height, width = stack.shape[1:]
    if min(height, width) < crop + 2 * margin:
        raise InputError(f"sections of {(height, width)} are too small for crops of {crop} "
                         f"with a {margin}-pixel motion margin; lower data.crop or the motions")
    y0 = int(rng.integers(margin, height - crop - margin + 1))
    x0 = int(rng.integers(margin, width - crop - margin + 1))
    reference = stack[z, y0:y0 + crop, x0:x0 + crop]
    big = stack[n, y0 - margin:y0 + crop + margin, x0 - margin:x0 + crop + margin]
    sample = xforms.compose(xforms.from_translations([[margin, margin]]), xforms.invert(truth))
    moving = xforms.apply_transforms(big[None].astype(np.float32), sample, order=1,
                              output_shape=(crop, crop))[0]
    coords = np.moveaxis(xforms.sampling_grid(truth, 0, (crop, crop)), 0, -1).astype(np.float32)
    return standardize(moving), standardize(reference), coords


class PairSampler(keras.utils.PyDataset):
    """Batches of training pairs (:func:`draw_pair`), seeded by (seed, epoch, index).

    Args:
        stack: ndarray of shape (Z, Y, X), the well-aligned training sections.
        crop: crop edge in pixels.
        motions: ``jitter_px, slip_p, slip_px, rotation_deg, elastic_px, elastic_grid``.
        batch_size: pairs per batch.
        steps_per_epoch: batches per epoch (``len``).
        seed: the seed; the same (seed, epoch, index) gives the same batch.
        epoch: the first epoch (a resumed run draws new pairs).
    """

    def __init__(self, stack, *, crop: int, motions: dict, batch_size: int = 8,
                 steps_per_epoch: int = 50, seed: int = 0, epoch: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.stack = np.asarray(stack)
        if self.stack.ndim != 3 or len(self.stack) < 2:
            raise InputError(f"training stack: expected (z, y, x) with z >= 2, got {self.stack.shape}")
        self.crop, self.motions = int(crop), dict(motions)
        self.batch_size, self.steps = int(batch_size), int(steps_per_epoch)
        self.seed, self.epoch = int(seed), int(epoch)

    def __len__(self):
        return self.steps

    def batch(self, rng, size):
        """A batch of ``size`` pairs drawn with ``rng``, as ``fit`` takes it.

        Args:
            rng: a ``numpy.random.Generator``.
            size: the number of pairs.

        Returns:
            ``(inputs, targets)``: inputs ``{"moving", "reference"}`` of shape
            (size, crop, crop, 1); targets ``{"warped": reference, "transform": coords}``,
            the coordinates of shape (size, crop, crop, 2).
        """
        pairs = [draw_pair(self.stack, rng, crop=self.crop, motions=self.motions)
                 for _ in range(size)]
        moving, reference, coords = (np.stack(p)[..., None] if k < 2 else np.stack(p)
                                     for k, p in enumerate(zip(*pairs)))
        return ({"moving": moving, "reference": reference},
                {"warped": reference, "transform": coords})

    def __getitem__(self, index):
        rng = np.random.default_rng((self.seed, self.epoch, int(index)))
        return self.batch(rng, self.batch_size)

    def on_epoch_end(self):
        self.epoch += 1


def overlay_pair(moving, reference, warped) -> np.ndarray:
    """An RGB uint8 image: reference in green, moving (left) / warped (right) in magenta.

    Aligned structures turn grey; misaligned ones show green and magenta fringes.

    Args:
        moving: ndarray of shape (Y, X), the moving image before alignment.
        reference: ndarray of shape (Y, X), the reference image.
        warped: ndarray of shape (Y, X), the moving image warped onto the reference.

    Returns:
        ndarray of shape (Y, 2 X + 4, 3), each image scaled by its 1st-99th percentiles.
    """
    def unit(x):
        x = np.asarray(x, np.float32)
        lo, hi = np.percentile(x, (1, 99))
        return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)

    ref = unit(reference)
    panels = []
    for image in (moving, warped):
        img = unit(image)
        panels.append(np.stack([img, ref, img], -1))
    gap = np.ones((ref.shape[0], 4, 3), np.float32)
    return (np.concatenate([panels[0], gap, panels[1]], 1) * 255).astype(np.uint8)


def validation_function(stack, *, crop, motions, pairs, seed, kind, ncc_kind="global",
                        window=9):
    """``validate(model) -> (metrics, images)`` on fixed pairs: coordinate error and NCC.

    Args:
        stack: ndarray of shape (Z, Y, X), the well-aligned validation sections.
        crop: crop edge in pixels.
        motions: the motions of the pairs, as for :class:`PairSampler`.
        pairs: the number of fixed pairs, drawn once from ``seed``.
        seed: the seed of the pairs.
        kind: ``"affine"`` or ``"flow"``, the model's transform.
        ncc_kind: ``"global"`` or ``"local"`` NCC for the reported ``ncc_loss``.
        window: the local NCC window edge in pixels (odd).

    Returns:
        A function of a pair model returning ``({"coord_error_px", "ncc_loss"},
        {"overlay": RGB uint8 image of the first pair (see :func:`overlay_pair`)})``.
    """
    sampler = PairSampler(stack, crop=crop, motions=motions, batch_size=pairs, seed=seed)
    x, y = sampler.batch(np.random.default_rng((seed, 10**6)), pairs)

    def validate(model):
        # Not model.evaluate: inside fit it would reset the training metrics.
        out = {k: [] for k in ("warped", "transform")}
        for i in range(0, pairs, 8):
            batch = model({k: v[i:i + 8] for k, v in x.items()}, training=False)
            for k, parts in out.items():
                parts.append(keras.ops.convert_to_numpy(batch[k]))
        warped, transform = (np.concatenate(out[k]) for k in ("warped", "transform"))
        error = coordinate_error(y["transform"], transform, kind)
        ncc = NCCLoss(ncc_kind, window)(y["warped"], warped)
        return ({"coord_error_px": float(np.mean(keras.ops.convert_to_numpy(error))),
                 "ncc_loss": float(keras.ops.convert_to_numpy(ncc))},
                {"overlay": overlay_pair(x["moving"][0, ..., 0], x["reference"][0, ..., 0],
                                         warped[0, ..., 0])})

    return validate


def load_training_stack(recipe):
    """The recipe's training sections (Z, Y, X) float32, pre-aligned if asked, and checksums."""
    from emkit.datasets import load_dataset

    data = load_dataset(recipe.data.name, root=recipe.data.root)
    start, stop = recipe.data.sections
    depth = data.raw.shape[0]
    if stop > depth:
        raise InputError(f"data.sections: [{start}, {stop}) exceeds the {depth} sections of "
                         f"{recipe.data.name}")
    stack = np.asarray(data.raw[start:stop], np.float32)
    if recipe.data.prealign == "xcorr":
        from emkit.align.xcorr import align_xcorr

        transforms = align_xcorr(stack, progress=True)
        stack = xforms.apply_transforms(stack, transforms)
        # Crop the border that some section does not cover.
        valid = xforms.valid_mask(transforms, stack.shape[1:]).all(0)
        rows, cols = np.flatnonzero(valid.all(1)), np.flatnonzero(valid.all(0))
        if len(rows) and len(cols):
            stack = stack[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return stack, getattr(data, "checksums", {}) or {}


# ---------------------------------------------------------------------------- aligning


def load_align_model(path) -> keras.Model:
    """A pair model (``.keras``) saved by :func:`emkit.recipes.align_run.train_aligner`; InputError if it is not one."""
    from emkit.models.saving import load_model

    with keras.saving.custom_object_scope(CUSTOM_OBJECTS):
        model = load_model(path, compile=False)
    transform_kind(model)  # raises InputError for a model that is not an aligner
    return model


def transform_to_transforms(transform, kind: str, shape) -> xforms.Transforms:
    """The network's output for one pair as :class:`~emkit.align.transforms.Transforms`.

    Args:
        transform: ``theta`` (1, 2, 3) or (2, 3), or the flow (1, Y, X, 2) or (Y, X, 2).
        kind: ``"affine"`` or ``"flow"``.
        shape: (Y, X) of the images.
    """
    transform = np.asarray(transform, np.float64)
    if kind == "affine":
        return xforms.normalized_to_affine(transform.reshape(-1, 2, 3), shape)
    flow = transform.reshape(-1, *transform.shape[-3:])
    if flow.shape[1:3] != tuple(shape):
        raise InputError(f"flow of shape {flow.shape[1:3]} does not match the images {tuple(shape)}")
    return xforms.Transforms(np.repeat(np.eye(3)[None], len(flow), 0), flow.astype(np.float32))


def align_learned(raw, model, *, prealign: str = "xcorr", drift_sigma=10.0,
                  progress: bool = False) -> xforms.Transforms:
    """Aligns a stack with a trained pair model (see the module docstring).

    Args:
        raw: ndarray of shape (Z, Y, X).
        model: a pair model (:func:`~emkit.align.learned_model.build_pair_aligner`) or
            the path of its ``.keras`` file.
        prealign: ``"xcorr"``: the cross-correlation translation of each pair first, the
            network corrects what is left; ``"none"``: the network alone.
        drift_sigma: width in sections of the trend removed over z (None or 0: only the
            mean), as in :func:`~emkit.align.xcorr.align_xcorr`.
        progress: a progress bar over sections on stderr.

    Returns:
        :class:`~emkit.align.transforms.Transforms` (aligned -> raw), with fields for a
        flow model.
    """
    from tqdm import tqdm

    from emkit.align.xcorr import estimate_shift, remove_drift

    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise InputError(f"align_learned needs a (z, y, x) stack, got shape {raw.shape}")
    if prealign not in PREALIGN:
        raise InputError(f"prealign: got {prealign!r}; allowed: {', '.join(PREALIGN)}")
    if not isinstance(model, keras.Model):
        model = load_align_model(model)
    kind = transform_kind(model)
    shape = raw.shape[1:]
    chain = [xforms.identity_transforms(1)]
    reference = 0
    aligned_ref = raw[0].astype(np.float32)
    ref_valid = np.ones(shape, bool)
    for z in tqdm(range(1, len(raw)), desc="align", unit="section", disable=not progress,
                  file=sys.stderr):
        if np.ptp(raw[z]) == 0 or np.ptp(raw[reference]) == 0:
            chain.append(chain[reference])
            if np.ptp(raw[z]) > 0:
                reference, aligned_ref = z, raw[z].astype(np.float32)
                ref_valid = xforms.valid_mask(chain[z], shape)[0]
            continue
        pair = xforms.identity_transforms(1)
        if prealign == "xcorr":
            pair = xforms.from_translations(-estimate_shift(raw[reference], raw[z])[None])
        initial = xforms.compose(pair, chain[reference], shape=shape)
        moving = xforms.apply_transforms(raw[z][None].astype(np.float32), initial)[0]
        moving_valid = xforms.valid_mask(initial, shape)[0]
        x = {"moving": standardize(moving, moving_valid)[None, ..., None],
             "reference": standardize(aligned_ref, ref_valid)[None, ..., None]}
        out = model(x, training=False)
        residual = transform_to_transforms(keras.ops.convert_to_numpy(out["transform"]), kind,
                                           shape)
        chain.append(xforms.compose(initial, residual, shape=shape))
        reference = z
        aligned_ref = xforms.apply_transforms(raw[z][None].astype(np.float32), chain[z])[0]
        ref_valid = xforms.valid_mask(chain[z], shape)[0]
    return remove_drift(xforms.concatenate(chain, shape=shape), shape=shape,
                        sigma=drift_sigma or None)


__all__ = ["PairSampler", "align_learned", "draw_pair", "load_align_model",
           "load_training_stack", "overlay_pair", "transform_to_transforms",
           "validation_function"]
