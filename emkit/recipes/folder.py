"""A run's folder and its tracking run: claimed, opened, resumed.

A run lives in one folder, ``<run.output_root>/<recipe>-<timestamp>/`` (see
:mod:`emkit.recipes.run` for what it holds). :func:`open_run` claims the folder under
the overwrite rules, starts (or continues) the tracking run and writes ``state.json``
at once, so that a run killed at any point is resumed by the same command. Shared by
:func:`emkit.recipes.run.run_recipe` and :func:`emkit.recipes.align_run.train_aligner`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emkit.errors import InputError, OverwriteError


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        run_id: the tracking run.
        output_dir: the run folder.
        model_path: the trained ``.keras`` model.
        steps: optimizer steps done in all.
        metrics: the final validation metrics.
        stopped: why training stopped.
        resumed: whether this call continued an earlier run.
        outputs: files written (predictions, exports).
        tuning: the :class:`~emkit.tune.heldout.HeldoutTuning` of ``postprocess.tune``,
            or None when the run did not tune.
    """

    run_id: str
    output_dir: Path
    model_path: Path
    steps: int
    metrics: dict
    stopped: str = ""
    resumed: bool = False
    outputs: list = field(default_factory=list)
    tuning: Any = None


def run_folder(recipe, output=None) -> Path:
    """``output``, or a new ``<output_root>/<recipe>-<YYYYmmdd-HHMMSS>`` folder name.

    Args:
        recipe: the loaded recipe (``run.output_root``, its name).
        output: the folder asked for, or None.
    """
    if output is not None:
        return Path(output)
    return Path(recipe.run.output_root) / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _claim_folder(folder: Path, *, resume: bool, overwrite: bool, tracker):
    """The state to resume from (or None), after the overwrite rules.

    An unfinished run is resumed, even one killed before its first checkpoint (its
    ``state.json`` is written when it starts). A run that ``overwrite`` replaces while it
    was unfinished has its tracking run ended as KILLED, so that none stays RUNNING.
    """
    from emkit.training import read_state

    state = read_state(folder / "checkpoints")
    if state is not None and (resume if state.finished else not overwrite):
        return state
    if folder.exists() and any(p.is_file() for p in folder.rglob("*")):
        if not overwrite:
            what = "a finished run" if state is not None else "files"
            raise OverwriteError(
                f"output folder {str(folder)!r} holds {what}; pass --overwrite to replace it"
                + (" or --resume to train it further" if state is not None else "")
            )
        if state is not None and not state.finished:
            tracker.end_run(state.run_id, "KILLED")
    if folder.exists():
        shutil.rmtree(folder)
    return None


@dataclass
class OpenRun:
    """A claimed run folder whose tracking run has started (see :func:`open_run`).

    Attributes:
        folder: the run folder.
        state: the run's ``state.json``: the one resumed from (``finished`` reset to
            False), or a new one at step 0.
        tracker: the tracker, its run started.
        run_id: the tracking run.
        resumed: True when the folder held the run already.
    """

    folder: Path
    state: Any
    tracker: Any
    run_id: str
    resumed: bool

    @property
    def checkpoints_dir(self) -> Path:
        return self.folder / "checkpoints"


def open_run(recipe, folder: Path, recipe_text: str, *, params: dict, resume: bool,
             overwrite: bool, tracker=None, parent_run_id: str | None = None) -> OpenRun:
    """Claims ``folder`` (:func:`_claim_folder`), creates ``checkpoints/``, starts the
    tracking run (or continues the resumed one) and writes ``recipe_text`` to
    ``recipe.yaml`` (``recipe-resume-<step>.yaml`` on a resume) as an artifact.

    A new run logs ``params`` and writes its ``state.json`` at once, so that a kill at
    any later point leaves a run that the same command resumes.

    Shared by :func:`run_recipe` and :func:`emkit.recipes.align_run.train_aligner`; ``recipe``
    needs ``tracking.uri`` and ``tracking.experiment``.

    Args:
        recipe: the loaded recipe (or an align recipe).
        folder: the run folder.
        recipe_text: the resolved recipe as YAML, written beside the run.
        params: the params a new run logs.
        resume: also continue a finished run.
        overwrite: start the folder afresh (an unfinished run's tracking run is ended KILLED).
        tracker: the tracker; None: MLflow at ``tracking.uri``.
        parent_run_id: start the new tracking run as a child of this one.
    """
    from emkit.tracking import MlflowTracker
    from emkit.training import TrainState, write_state

    if folder.exists() and not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} is a file; --output takes the run's "
                         "folder (new, or one that holds a run)")
    tracker = tracker or MlflowTracker(recipe.tracking.uri)
    state = _claim_folder(folder, resume=resume, overwrite=overwrite, tracker=tracker)
    resumed = state is not None
    if resumed:
        state.finished = False
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    run_id = tracker.start(experiment=recipe.tracking.experiment, run_name=folder.name,
                           run_id=state.run_id if resumed else None, parent_run_id=parent_run_id)
    if not resumed:
        tracker.log_params(params)
        state = TrainState(run_id=run_id, recipe=recipe.name)
        write_state(folder / "checkpoints", state)
    recipe_file = folder / ("recipe.yaml" if not resumed else f"recipe-resume-{state.step}.yaml")
    recipe_file.write_text(recipe_text)
    tracker.log_artifact(recipe_file)
    return OpenRun(folder, state, tracker, run_id, resumed)


def git_commit() -> str:
    """The git commit of the emkit checkout (``+dirty`` if changed), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]  # the checkout (emkit/recipes/folder.py)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


__all__ = ["OpenRun", "RunResult", "git_commit", "open_run", "run_folder"]
