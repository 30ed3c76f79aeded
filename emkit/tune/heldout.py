"""Postprocessing tuned inside a run, with a score from sections the tuner did not see.

``emkit recipe run`` ends with this step (``postprocess.tune: true``, the default):

1. The scored validation sections are cut into ``folds`` contiguous blocks (two by
   default: sections 20-22 and 23-24 of ISBI's 20-24).
2. For each block, an Optuna study (:func:`emkit.tune.postprocess.tune_postprocess`)
   tunes the options on the *other* blocks, and the options it finds are scored on
   this block alone. The reported "after" score is the mean of these held-out scores,
   weighted by sections: each section is scored with options that never saw it.
3. The "before" score is the recipe's own options scored the same way, block by
   block, so the two numbers compare like with like.
4. A last study tunes on all scored sections. Its options make the run's final
   segmentation, its exports and the ``postprocess.options`` of its ``recipe.yaml``
   (which ``emkit segment --recipe`` reads). Its own score is in-sample, so it is
   reported only as ``in_sample``, never as the run's result.
5. Unless tuning did not pay on held-out sections: when the held-out "after" is not
   better than the "before", tuned options fit the tuning sections and no others, and
   the recipe's options are kept (``kept_recipe_options``). With five ISBI sections a
   study tunes on two or three, and a well-trained map's good default can beat it.

Cross-fitting costs ``folds + 1`` studies of ``n_trials`` each; on the bundled ISBI
sections a watershed trial takes under a second.

>>> split_folds([0, 1, 2, 3, 4], 2)
[[0, 1, 2], [3, 4]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emkit.errors import InputError


@dataclass
class Fold:
    """One block of the cross-fitting.

    Attributes:
        tuned_on: indices into the validation volume's Z that the study tuned on.
        scored_on: the indices it was scored on (disjoint from ``tuned_on``).
        options: the options tuned on ``tuned_on``.
        before: the recipe options' scores on ``scored_on``.
        after: the tuned options' scores on ``scored_on``.
    """

    tuned_on: list[int]
    scored_on: list[int]
    options: dict
    before: dict
    after: dict


@dataclass
class HeldoutTuning:
    """What :func:`tune_heldout` found.

    Attributes:
        metric: the tuned metric (a key of ``OBJECTIVES``).
        direction: ``"maximize"`` or ``"minimize"``.
        options: the options tuned on all scored sections (for the final segmentation).
        before: the recipe options' held-out scores (``metric``, ``rand_split``,
            ``rand_merge``), section-weighted over the folds.
        after: the tuned options' held-out scores, likewise.
        in_sample: the all-sections study's best value (optimistic; for reference).
        folds: the :class:`Fold` list.
        study: the all-sections :class:`~emkit.tune.postprocess.TuneResult`.
        kept_recipe_options: True when the held-out "after" did not beat the "before":
            ``options`` are then the recipe's own.
        tuned_options: the all-sections study's best options, kept or not.
    """

    metric: str
    direction: str
    options: dict
    before: dict
    after: dict
    in_sample: float
    folds: list[Fold] = field(default_factory=list)
    study: object = None
    kept_recipe_options: bool = False
    tuned_options: dict = field(default_factory=dict)

    @property
    def result(self) -> dict:
        """The held-out scores of the options the run goes on with."""
        return self.before if self.kept_recipe_options else self.after


def split_folds(sections, folds: int = 2) -> list[list[int]]:
    """``sections`` cut into ``folds`` contiguous blocks, the larger blocks first.

    Args:
        sections: the section indices, in order.
        folds: how many blocks (at least 2, at most one per section).
    """
    sections = [int(z) for z in sections]
    if folds < 2 or len(sections) < folds:
        raise InputError(
            f"held-out tuning needs at least {max(folds, 2)} scored validation sections, got "
            f"{len(sections)} ({sections}); set postprocess.tune: false or add "
            "data.validation_sections"
        )
    return [block.tolist() for block in np.array_split(np.array(sections), folds)]


def tune_heldout(pred, gt, *, method: str, scored_sections, base_options: dict | None = None,
                 n_trials: int = 40, metric: str | None = None, folds: int = 2,
                 voxel_size_nm=None, offsets=None, storage: str | None = None,
                 study_prefix: str = "run", seed: int = 0,
                 progress: bool = True) -> HeldoutTuning:
    """Cross-fitted postprocessing tuning (see the module docstring).

    Args:
        pred: the validation prediction, as :func:`~emkit.tune.postprocess.tune_postprocess`
            takes it.
        gt: the validation labels, shape (Z, Y, X).
        method: ``postprocess.method``.
        scored_sections: indices into Z of the labelled sections.
        base_options: the recipe's ``postprocess.options`` (trial 0 of every study, and
            the "before").
        n_trials: trials per study.
        metric: the tuned metric; default per method.
        folds: blocks of the cross-fitting (>= 2).
        voxel_size_nm, offsets: as for ``tune_postprocess``.
        storage: the Optuna storage URL of the studies (a run keeps them in its folder,
            so a rerun after a kill resumes them).
        study_prefix: the studies are named ``<prefix>-fold<k>`` and ``<prefix>-all``.
        seed: the TPE seed.
        progress: progress bars on stderr.

    Returns:
        A :class:`HeldoutTuning`.
    """
    from emkit.tune.postprocess import (
        DEFAULT_METRIC,
        OBJECTIVES,
        score_options,
        tune_postprocess,
    )

    metric = metric or DEFAULT_METRIC.get(method)
    if metric not in OBJECTIVES:
        raise InputError(f"postprocess.tune_metric: got {metric!r}; allowed: {', '.join(OBJECTIVES)}")
    base = dict(base_options or {})
    scored = [int(z) for z in scored_sections]
    blocks = split_folds(scored, folds)
    common = {"method": method, "n_trials": n_trials, "metric": metric, "base_options": base,
                  "storage": storage, "seed": seed, "voxel_size_nm": voxel_size_nm, "offsets": offsets,
                  "progress": progress}
    score = {"method": method, "metric": metric, "voxel_size_nm": voxel_size_nm, "offsets": offsets}
    found = []
    for k, held in enumerate(blocks):
        tuned_on = [z for z in scored if z not in held]
        study = tune_postprocess(pred, gt, scored_sections=tuned_on,
                                 study_name=f"{study_prefix}-fold{k}", **common)
        found.append(Fold(
            tuned_on=tuned_on, scored_on=held, options=study.best_options,
            before=score_options(pred, gt, base, scored_sections=held, **score),
            after=score_options(pred, gt, study.best_options, scored_sections=held, **score),
        ))
    final = tune_postprocess(pred, gt, scored_sections=scored, study_name=f"{study_prefix}-all",
                             **common)
    sizes = [len(f.scored_on) for f in found]
    before = _weighted([f.before for f in found], sizes)
    after = _weighted([f.after for f in found], sizes)
    sign = 1 if OBJECTIVES[metric][0] == "maximize" else -1
    kept = not sign * after[metric] > sign * before[metric]
    return HeldoutTuning(
        metric=metric, direction=OBJECTIVES[metric][0],
        options=dict(base) if kept else final.best_options, before=before, after=after,
        in_sample=final.best_value, folds=found, study=final, kept_recipe_options=kept,
        tuned_options=final.best_options,
    )


def _weighted(scores: list[dict], weights: list[int]) -> dict:
    total = float(sum(weights))
    return {key: sum(s[key] * w for s, w in zip(scores, weights)) / total for key in scores[0]}


__all__ = ["Fold", "HeldoutTuning", "split_folds", "tune_heldout"]
