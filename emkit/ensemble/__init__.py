"""Ensembles of trained models (thesis 2.8, EnsembleLearner; Table 3.1).

An ensemble is a small YAML file of member ``.keras`` models with weights; its
prediction is the weighted mean of the members' tiled predictions::

    from emkit.ensemble import load_predictor, make_ensemble, predict_ensemble, save_ensemble

    ensemble = make_ensemble(["a/model.keras", "b/model.keras"], weights=[2, 1])
    save_ensemble(ensemble, "ensemble.yaml")
    pred = predict_ensemble(load_predictor("ensemble.yaml"), raw)      # (Z, Y, X, C)

- :mod:`~emkit.ensemble.file`: the :class:`Ensemble` file (load, save, sha256
  checks).
- :mod:`~emkit.ensemble.model`: :func:`predict_ensemble`, the weighted mean of the
  members (of any architecture and field of view, in memory or out of core).
- :mod:`~emkit.ensemble.weights`: member weights fitted on validation sections
  (least cross-entropy on the simplex).
- :mod:`~emkit.ensemble.train`: :func:`train_ensemble`, K runs of a recipe as
  child tracking runs of one parent, then the ensemble scored like a single run.

Stage order: after inference (it calls :func:`~emkit.inference.predict_volume`)
and the recipes (training runs them); the ``emkit ensemble`` command sits on top.
Importing this package imports no Keras.
"""

from emkit.ensemble.file import (
    Ensemble,
    Member,
    file_sha256,
    is_ensemble_file,
    load_ensemble,
    load_members,
    load_predictor,
    make_ensemble,
    normalize_weights,
    save_ensemble,
    with_weights,
)
from emkit.ensemble.model import check_members, predict_ensemble
from emkit.ensemble.train import EnsembleRun, train_ensemble
from emkit.ensemble.weights import WeightFit, fit_validation_weights, fit_weights

__all__ = [
    "Ensemble",
    "EnsembleRun",
    "Member",
    "WeightFit",
    "check_members",
    "file_sha256",
    "fit_validation_weights",
    "fit_weights",
    "is_ensemble_file",
    "load_ensemble",
    "load_members",
    "load_predictor",
    "make_ensemble",
    "normalize_weights",
    "predict_ensemble",
    "save_ensemble",
    "train_ensemble",
    "with_weights",
]
