"""Experiment tracking behind a tiny interface; the only module that imports MLflow.

A tracker has ``start / log_params / log_metrics / log_artifact / log_image /
set_tags / finish``. :class:`MlflowTracker` writes to any MLflow tracking URI (the
default is a local SQLite store, ``sqlite:///mlruns/mlflow.db``, with artifacts in
``mlruns/artifacts``); :class:`MemoryTracker` keeps everything in lists, for tests.

One run per recipe execution: :meth:`Tracker.start` with the ``run_id`` of an
interrupted run continues that run. MLflow params cannot change once logged, so a
resumed run logs none (see :func:`emkit.recipes.run.run_recipe`).

>>> tracker = MemoryTracker()
>>> run_id = tracker.start(experiment="demo", run_name="a")
>>> tracker.log_metrics({"train_loss": 0.5}, step=1)
>>> tracker.metrics["train_loss"]
[(1, 0.5)]
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from emkit.errors import InputError

#: The local store used when neither the recipe, the CLI nor $MLFLOW_TRACKING_URI names one.
DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
#: The tag by which MLflow nests a run under its parent.
PARENT_TAG = "mlflow.parentRunId"
#: MLflow's limit on a param value's length.
MAX_PARAM_LENGTH = 500


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else :data:`DEFAULT_URI`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _sqlite_folder(uri: str) -> Path | None:
    """The folder of a ``sqlite:///`` store's file (created), or None for other stores."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    folder = Path(uri[len(prefix):]).parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder


#: The experiment tag that MLflow 3's UI reads to open an experiment in its model-training
#: view (runs, metric charts) rather than its GenAI overview of traces.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


class MemoryTracker:
    """A tracker that keeps everything in memory (tests, dry runs).

    Attributes:
        params: dict of logged params.
        metrics: name -> list of ``(step, value)``.
        artifacts: list of ``(local_path, artifact_path)``.
        images: list of ``(key, step, shape)``.
        tags: dict of tags.
        status: the status given to :meth:`finish`, or None while running.
        ended: run id -> status, for the runs :meth:`end_run` ended.
    """

    def __init__(self):
        self.run_id = None
        self.params: dict = {}
        self.metrics: dict[str, list] = {}
        self.artifacts: list = []
        self.images: list = []
        self.tags: dict = {}
        self.status = None
        self.ended: dict[str, str] = {}
        self._logged = _Logged({})

    def start(self, *, experiment: str, run_name: str, run_id: str | None = None,
              parent_run_id: str | None = None) -> str:
        """Starts a new run (a random id), or continues run ``run_id``.

        Args:
            experiment: the experiment's name (not kept).
            run_name: the new run's name (not kept).
            run_id: continue this run instead: metric points at steps it already logged,
                and images up to the last such step, are not recorded again (as
                :meth:`MlflowTracker.start`).
            parent_run_id: for a new run, recorded as the tag ``mlflow.parentRunId``.

        Returns:
            The run id.
        """
        self.run_id = run_id or uuid.uuid4().hex
        self.status = None
        if parent_run_id is not None and run_id is None:
            self.tags[PARENT_TAG] = parent_run_id
        self._logged = _Logged({k: max((s for s, _ in v), default=-1)
                                for k, v in self.metrics.items()} if run_id else {})
        return self.run_id

    def log_params(self, params: dict) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: dict, *, step: int) -> None:
        """Appends ``(step, value)`` to each metric's list (skipping points a continued run
        already logged, see :meth:`start`).

        Args:
            metrics: name -> number.
            step: the optimizer step (or trial count) they belong to.
        """
        for key, value in self._logged.new(metrics, step).items():
            self.metrics.setdefault(key, []).append((step, float(value)))

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """The ``(step, value)`` points logged for ``key``, in logging order."""
        return list(self.metrics.get(key, []))

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        """Records ``(path, artifact_path)`` in ``artifacts`` (nothing is copied).

        Args:
            path: the file or folder.
            artifact_path: the artifact folder it would go in (None: the top).
        """
        self.artifacts.append((str(path), artifact_path))

    def log_image(self, image, *, key: str, step: int) -> None:
        """Records ``(key, step, image.shape)`` in ``images``.

        Args:
            image: RGB uint8 ndarray (H, W, 3).
            key: the image's name.
            step: the optimizer step.
        """
        if step > self._logged.last_step:
            self.images.append((key, step, tuple(image.shape)))

    def set_tags(self, tags: dict) -> None:
        self.tags.update(tags)

    def finish(self, status: str = "FINISHED") -> None:
        self.status = status

    def end_run(self, run_id: str, status: str = "KILLED") -> None:
        """Records ``ended[run_id] = status``.

        Args:
            run_id: the run to end.
            status: its final status.
        """
        self.ended[run_id] = status


class MlflowTracker:
    """A tracker that writes to an MLflow tracking store.

    Args:
        uri: a tracking URI (see :func:`tracking_uri`). A ``sqlite:///`` store keeps
            artifacts in ``artifacts/`` beside its file.
        tags: tags set on every run this tracker starts or continues (e.g. a tuning
            study's and trial's).
        on_start: called with the run id each time a run starts or continues.
    """

    def __init__(self, uri: str | None = None, *, tags: dict | None = None, on_start=None):
        from mlflow import MlflowClient

        self.uri = tracking_uri(uri)
        self._folder = _sqlite_folder(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id = None
        self._logged = _Logged({})
        self._tags, self._on_start = dict(tags or {}), on_start

    def start(self, *, experiment: str, run_name: str, run_id: str | None = None,
              parent_run_id: str | None = None) -> str:
        """Starts a new run in ``experiment``, or continues run ``run_id``.

        Args:
            experiment: the experiment's name (created if new).
            run_name: the new run's name.
            run_id: continue this run instead (status back to RUNNING). Metric points
                at steps it already logged, up to the step where it stopped, are not
                logged again (see :class:`_Logged`).
            parent_run_id: make the new run a child of this one (MLflow's nested runs:
                the UI shows it under its parent; tuning trials, ensemble members).

        Returns:
            The run id.
        """
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            keys = self.client.get_run(run_id).data.metrics
            self._logged = _Logged({k: max((int(m.step) for m in
                                            self.client.get_metric_history(run_id, k)), default=-1)
                                    for k in keys})
        else:
            self._logged = _Logged({})
            experiment_id = self._experiment_id(experiment)
            tags = {PARENT_TAG: parent_run_id} if parent_run_id is not None else None
            self.run_id = self.client.create_run(experiment_id, run_name=run_name,
                                                 tags=tags).info.run_id
        if self._tags:
            self.set_tags(self._tags)
        if self._on_start is not None:
            self._on_start(self.run_id)
        return self.run_id

    def _experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if new.

        Processes that start together (tuning workers, ensemble members) race to create
        it: the loser's ``create_experiment`` fails, and it reads the winner's instead.
        """
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if EXPERIMENT_KIND[0] not in found.tags:
                self.client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
            return found.experiment_id
        location = None
        if self._folder is not None:
            location = (self._folder / "artifacts").resolve().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location,
                                                 tags=dict([EXPERIMENT_KIND]))
        except MlflowException:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict, *, step: int) -> None:
        """Logs numbers at one step, in one batch; None values are skipped.

        Args:
            metrics: name -> number.
            step: the optimizer step (or trial count) they belong to.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step))
                 for k, v in self._logged.new(metrics, step).items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """The ``(step, value)`` points logged for ``key`` in this run, by time."""
        points = self.client.get_metric_history(self.run_id, key)
        return [(int(m.step), float(m.value)) for m in sorted(points, key=lambda m: m.timestamp)]

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        """Copies a file, or a folder's files, into the run's artifacts.

        Args:
            path: the file or folder.
            artifact_path: the artifact folder to put it in (default: the top).
        """
        path = os.fspath(path)
        if os.path.isdir(path):
            self.client.log_artifacts(self.run_id, path, artifact_path)
        else:
            self.client.log_artifact(self.run_id, path, artifact_path)

    def log_image(self, image, *, key: str, step: int) -> None:
        """Logs an image at a step (MLflow shows a slider over steps).

        Args:
            image: RGB uint8 ndarray (H, W, 3).
            key: the image's name, e.g. ``"val_overlay"``.
            step: the optimizer step.
        """
        if step > self._logged.last_step:
            self.client.log_image(self.run_id, image, key=key, step=int(step))

    def set_tags(self, tags: dict) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def finish(self, status: str = "FINISHED") -> None:
        """Ends the run: ``"FINISHED"``, ``"KILLED"`` (interrupted; resumable) or ``"FAILED"``."""
        self.client.set_terminated(self.run_id, status=status)

    def ensure_store(self) -> None:
        """Creates the store's tables if it is new (processes that start together race)."""
        self.client.search_experiments(max_results=1)

    def is_active(self, run_id: str) -> bool:
        """True when the store holds ``run_id`` and it is not deleted."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def runs_tagged(self, run_id: str, tags: dict) -> list[tuple[str, int]]:
        """``(run id, start time in ms)`` of the runs in ``run_id``'s experiment that carry
        every tag of ``tags``, ``run_id`` itself included when it does.

        Args:
            run_id: a run of the experiment to search.
            tags: tag -> value, all of which a run must carry.
        """
        experiment = self.client.get_run(run_id).info.experiment_id
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        return [(r.info.run_id, r.info.start_time)
                for r in self.client.search_runs([experiment], filter_string=where)]

    def delete_run(self, run_id: str) -> None:
        """Deletes a run (MLflow keeps it in the trash until the store is cleaned)."""
        self.client.delete_run(run_id)

    def end_run(self, run_id: str, status: str = "KILLED") -> None:
        """Ends another run that is still RUNNING (one a killed process left); a run that
        has ended, or that the store does not hold, is left as it is.

        Args:
            run_id: the run to end.
            status: its final status, ``"KILLED"`` by default.
        """
        from mlflow.exceptions import MlflowException

        try:
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, status=status)
        except MlflowException:
            pass


class _Logged:
    """The last step of each metric that a continued run logged before it stopped.

    A run resumed from a checkpoint at step ``c`` retrains steps ``c+1 ...`` that it
    may have logged before it was killed. Training resumes exactly
    (:func:`emkit.training.fit_steps`), so those points would repeat what is logged;
    they are dropped, and each metric keeps one point per step. Images are dropped
    up to the last step that any metric reached.
    """

    def __init__(self, last: dict[str, int]):
        self.last = dict(last)
        self.last_step = max(self.last.values(), default=-1)

    def new(self, metrics: dict, step: int) -> dict:
        """The items of ``metrics`` not yet logged at ``step``.

        Args:
            metrics: name -> value, about to be logged.
            step: their step.
        """
        if not self.last:
            return metrics
        return {k: v for k, v in metrics.items() if step > self.last.get(k, -1)}


@contextmanager
def ends_run_on_error(tracker):
    """Ends ``tracker``'s run if the block raises, then re-raises.

    Ctrl-C ends it ``"KILLED"`` (resumable); any other exception ends it with the
    exception's ``run_status`` attribute (e.g. ``"KILLED"`` for a pruned trial) or
    ``"FAILED"``. A block that finishes normally must call ``tracker.finish`` itself.
    """
    try:
        yield
    except KeyboardInterrupt:
        tracker.finish("KILLED")
        raise
    except BaseException as exc:
        tracker.finish(getattr(exc, "run_status", "FAILED"))
        raise


def _param_value(value) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def run_info(uri: str, run_id: str) -> dict:
    """A run's status, params, last metrics and tags, read back (for tests and summaries).

    Args:
        uri: the tracking store.
        run_id: the run.
    """
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    return {
        "status": run.info.status,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
        "artifact_uri": run.info.artifact_uri,
    }


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every logged value of metric ``key``, by step.

    Args:
        uri: the tracking store.
        run_id: the run.
        key: the metric's name.
    """
    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


def runs_page(uri: str, experiment: str | None = None) -> str:
    """The MLflow UI path of an experiment's runs table, in the model-training view.

    The experiment is ``experiment`` or the one with the newest run. MLflow 3's UI opens
    an experiment on its GenAI overview unless the address asks for
    ``workflowType=machine_learning`` (emkit's experiments also carry
    :data:`EXPERIMENT_KIND`).

    Raises:
        InputError: no experiment of that name, or a store that cannot be read.

    Args:
        uri: the tracking store.
        experiment: the experiment's name; None: the one with the newest run.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    try:
        if experiment is not None:
            found = client.get_experiment_by_name(experiment)
            if found is None:
                names = [e.name for e in client.search_experiments()]
                raise InputError(f"--experiment: no experiment {experiment!r} in {uri}; "
                                 f"it holds {', '.join(names) or 'none'}")
            experiment_id = found.experiment_id
        else:
            runs = client.search_runs(
                [e.experiment_id for e in client.search_experiments()],
                order_by=["attributes.start_time DESC"], max_results=1)
            if not runs:
                return "/#/experiments?workflowType=machine_learning"
            experiment_id = runs[0].info.experiment_id
    except MlflowException as exc:
        raise InputError(f"cannot read the tracking store {uri}: "
                         f"{' '.join(str(exc).split())[:200]}") from exc
    return f"/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def ui_command(uri: str | None = None, *, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The command line that starts the MLflow UI on a store (``emkit ui``).

    Args:
        uri: the tracking store (default: :func:`tracking_uri`'s).
        host, port: where the UI listens.
    """
    uri = tracking_uri(uri)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", host, "--port", str(port)]
    folder = _sqlite_folder(uri)
    if folder is not None:
        command += ["--default-artifact-root", (folder / "artifacts").resolve().as_uri()]
    return command


__all__ = [
    "DEFAULT_URI",
    "PARENT_TAG",
    "MemoryTracker",
    "MlflowTracker",
    "ends_run_on_error",
    "metric_history",
    "run_info",
    "runs_page",
    "tracking_uri",
    "ui_command",
]
