"""The EnsembleLearner (thesis 2.8): train K members of one recipe, then score their ensemble.

:func:`train_ensemble` is a short orchestration over :func:`emkit.recipes.run.run_recipe`::

    parent tracking run  <recipe>-ensemble<K>-<time>   (params: the recipe, members)
     ├─ member 0: run_recipe(recipe + run.seed=seed+0, output=DIR/member-0)   child run
     ├─ ...
     └─ member K-1                                                             child run
    DIR/ensemble.yaml     the members, equal weights
    ensemble on the validation sections: predict (the weighted mean), segment, evaluate
      -> val_<key> on the parent, with member<k>_<key> of each member beside them
    DIR/outputs/          validation.h5 (pred, seg) and the challenge exports

The folder::

    DIR/ensemble.json     parent run id, each member's run id, steps and final metrics
    DIR/recipe.yaml       the resolved recipe (its preprocessing for `emkit predict`)
    DIR/member-<k>/       a run folder each (model.keras, checkpoints/, outputs/)
    DIR/ensemble.yaml, DIR/outputs/

Calling it again with the same ``output`` continues: finished members are skipped,
an unfinished one resumes from its last checkpoint (``run_recipe`` resumes a folder
with an unfinished state), and the parent tracking run is continued. Each member
gets the recipe's whole budget (``train.max_steps``, ``train.max_minutes``); split
a total budget with an override such as ``train.max_minutes=9``.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from emkit.errors import InputError, OverwriteError
from emkit.io.text import write_text
from emkit.recipes import build

#: The folder's record of the ensemble run (parent run id, members' results).
RECORD_FILE = "ensemble.json"


@dataclass
class EnsembleRun:
    """What :func:`train_ensemble` produced.

    Attributes:
        parent_run_id: the parent tracking run.
        output_dir: the ensemble's folder.
        ensemble_path: its ``ensemble.yaml``.
        metrics: the ensemble's validation metrics.
        member_metrics: each member's final validation metrics.
        member_run_ids: each member's tracking run.
        trained: for each member, whether this call trained it (False: it was finished).
        outputs: files written (predictions, exports).
    """

    parent_run_id: str
    output_dir: Path
    ensemble_path: Path
    metrics: dict
    member_metrics: list = field(default_factory=list)
    member_run_ids: list = field(default_factory=list)
    trained: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


class EnsembleValidation(build.ValidationPipeline):
    """The :class:`~emkit.recipes.build.ValidationPipeline` of an ensemble: its
    prediction is :func:`~emkit.ensemble.predict_ensemble`'s; segmenting and
    evaluating are the recipe's, as for a single run."""

    def predict(self, ensemble, *, tta: bool | None = None):
        """The ensemble's prediction of the validation sections.

        Args:
            ensemble: an :class:`~emkit.ensemble.Ensemble`, or a sequence of models
                and/or ``.keras`` paths, as :func:`~emkit.ensemble.predict_ensemble` takes.
            tta: average flips and transposes; None: ``inference.tta``.
        """
        from emkit.ensemble.model import predict_ensemble

        return predict_ensemble(ensemble, self.raw, progress=False,
                                 **build.inference_options(self.recipe, tta=tta))


def ensemble_folder(recipe, members: int, output=None) -> Path:
    """``output``, or a new ``<output_root>/<recipe>-ensemble<K>-<YYYYmmdd-HHMMSS>`` name.

    Args:
        recipe: the members' recipe (its name and ``run.output_root``).
        members: ``K``, the number of members.
        output: the folder to use, or None for a new name.
    """
    if output is not None:
        return Path(output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(recipe.run.output_root) / f"{recipe.name}-ensemble{members}-{stamp}"


def read_record(folder) -> dict | None:
    """The folder's ``ensemble.json``, or None."""
    path = Path(folder) / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _write_record(folder: Path, record: dict) -> None:
    write_text(folder / RECORD_FILE, json.dumps(record, indent=2) + "\n")


def _claim(folder: Path, recipe, members: int, *, overwrite: bool) -> dict | None:
    """The record to continue from (or None), after the overwrite rules."""
    record = read_record(folder)
    if record is not None and not overwrite:
        if record.get("recipe") != recipe.name or record.get("members") != members:
            raise InputError(
                f"output folder '{folder}' holds an ensemble of {record.get('members')} "
                f"member(s) of {record.get('recipe')}; asked for {members} of {recipe.name}. "
                "Use the same --members and recipe to continue it, another --output, or "
                "--overwrite to start again"
            )
        return record
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise OverwriteError(
                f"output folder '{folder}' holds files that are not an ensemble run; pass "
                "--overwrite to replace it"
            )
        shutil.rmtree(folder)
    return None


def _numbers(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _member_metrics(record: dict, k: int, run_id: str, uri) -> dict:
    """A finished member's final metrics: from the record, else its tracking run's ``val_*``."""
    saved = record.get("member_runs", {}).get(str(k))
    if saved and saved.get("metrics"):
        return saved["metrics"]
    try:
        from emkit.tracking import run_info, tracking_uri

        logged = run_info(tracking_uri(uri), run_id)["metrics"]
    except Exception as exc:  # noqa: BLE001 - a summary is not worth failing the run
        warnings.warn(f"member {k}: no final metrics found ({exc})", stacklevel=3)
        return {}
    return {key[4:]: value for key, value in logged.items() if key.startswith("val_")}


def train_ensemble(recipe, *, members: int, overrides=(), quick: bool = False, output=None,
                   overwrite: bool = False, tracker=None, verbose: int = 0) -> EnsembleRun:
    """Trains ``members`` runs of a recipe (seeds ``run.seed + k``) and scores their ensemble.

    Args:
        recipe: a shipped recipe's name or a YAML path.
        members: K, the number of members (>= 1).
        overrides: ``key=value`` overrides for every member (e.g. a per-member budget,
            ``train.max_minutes=9``); each member adds ``run.seed=<seed + k>``.
        quick: the recipe's ``--quick`` budget, per member.
        output: the ensemble folder; default a new one under ``run.output_root``.
            A folder with an ``ensemble.json`` is continued.
        overwrite: delete the folder and start again.
        tracker: the parent run's tracker (default MLflow at ``tracking.uri``); the
            members always log to MLflow at ``tracking.uri`` as child runs.
        verbose: Keras' ``fit`` verbosity for the members.

    Returns:
        An :class:`EnsembleRun`.

    Raises:
        InputError: ``members`` < 1, or a folder that holds another ensemble.
        OverwriteError: the folder holds other files and ``overwrite`` is False.
    """
    from emkit.ensemble.file import make_ensemble, save_ensemble
    from emkit.recipes import dump_recipe, flatten, load_recipe, recipe_to_dict
    from emkit.recipes.folder import git_commit
    from emkit.recipes.run import run_recipe
    from emkit.tracking import MlflowTracker, ends_run_on_error
    from emkit.training import read_state

    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise InputError(f"members: expected an int >= 1, got {members!r}")
    overrides = list(overrides)
    base = load_recipe(recipe, overrides, quick=quick, segmentation_only=True)
    folder = ensemble_folder(base, members, output)
    record = _claim(folder, base, members, overwrite=overwrite)
    continued = record is not None
    if record is not None and record.get("finished"):
        return _finished(folder, record)
    folder.mkdir(parents=True, exist_ok=True)
    tracker = tracker or MlflowTracker(base.tracking.uri)
    parent_id = tracker.start(experiment=base.tracking.experiment, run_name=folder.name,
                              run_id=record["parent_run_id"] if continued else None)
    if not continued:
        record = {"recipe": base.name, "members": members, "parent_run_id": parent_id,
                  "overrides": overrides, "quick": quick, "finished": False, "member_runs": {}}
        _write_record(folder, record)
        (folder / "recipe.yaml").write_text(dump_recipe(base))
        tracker.log_params({**flatten(recipe_to_dict(base)), "ensemble.members": members})
        tracker.set_tags({"emkit.recipe": base.name, "emkit.ensemble": str(members),
                          "emkit.output_dir": str(folder.resolve()), "git_commit": git_commit()})
    with ends_run_on_error(tracker):
        run_ids, member_metrics, trained, steps = [], [], [], []
        for k in range(members):
            member_dir = folder / f"member-{k}"
            state = read_state(member_dir / "checkpoints")
            if state is not None and state.finished:
                run_ids.append(state.run_id)
                member_metrics.append(_member_metrics(record, k, state.run_id, base.tracking.uri))
                steps.append(state.step)
                trained.append(False)
                continue
            member_recipe = load_recipe(recipe, [*overrides, f"run.seed={base.run.seed + k}"],
                                        quick=quick)
            result = run_recipe(member_recipe, output=member_dir, parent_run_id=parent_id,
                                verbose=verbose, overwrite=state is None)
            run_ids.append(result.run_id)
            member_metrics.append(_numbers(result.metrics))
            steps.append(result.steps)
            trained.append(True)
            record["member_runs"][str(k)] = {"run_id": result.run_id, "steps": result.steps,
                                             "metrics": member_metrics[-1]}
            _write_record(folder, record)

        ensemble = make_ensemble(
            [folder / f"member-{k}" / "model.keras" for k in range(members)],
            metadata={"recipe": base.name, "seeds": [base.run.seed + k for k in range(members)],
                      "weights": {"method": "uniform"}, "parent_run_id": parent_id},
        )
        ensemble_path = save_ensemble(ensemble, folder / "ensemble.yaml", overwrite=True)
        data = build.prepare_data(base)
        tracker.set_tags({f"data.{k}": v for k, v in data.checksums.items()})
        validate = EnsembleValidation(base, data)
        start = time.monotonic()
        _, images = validate(ensemble)
        result = validate.last
        metrics = _numbers(result.metrics)
        step = max(steps)
        numbers = {f"val_{k}": v for k, v in metrics.items()}
        numbers["val_seconds"] = time.monotonic() - start
        for k, m in enumerate(member_metrics):
            numbers.update({f"member{k}_{key}": v for key, v in _numbers(m).items()})
        tracker.log_metrics(numbers, step=step)
        for name, image in images.items():
            tracker.log_image(image, key=f"val_{name}", step=step)
        outputs = build.write_outputs(base, data, result, folder / "outputs")
        tracker.log_artifact(ensemble_path)
        tracker.log_artifact(folder / "outputs", "outputs")
        record.update(finished=True, metrics=metrics, outputs=[str(p) for p in outputs])
        _write_record(folder, record)
        tracker.finish("FINISHED")
    return EnsembleRun(parent_id, folder, ensemble_path, metrics, member_metrics, run_ids,
                       trained, outputs)


def _finished(folder: Path, record: dict) -> EnsembleRun:
    """The result of a finished ensemble folder, read back; nothing is trained or logged."""
    count = record["members"]
    runs = [record.get("member_runs", {}).get(str(k), {}) for k in range(count)]
    return EnsembleRun(
        record["parent_run_id"], folder, folder / "ensemble.yaml", record.get("metrics", {}),
        [r.get("metrics", {}) for r in runs], [r.get("run_id") for r in runs], [False] * count,
        [Path(p) for p in record.get("outputs", [])],
    )


__all__ = [
    "RECORD_FILE",
    "EnsembleRun",
    "EnsembleValidation",
    "ensemble_folder",
    "read_record",
    "train_ensemble",
]
