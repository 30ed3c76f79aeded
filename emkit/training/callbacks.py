"""Keras callbacks that carry the DeepSeg training hooks (thesis section 2.6.2).

Each hook is a small ``keras.callbacks.Callback`` that acts every N optimizer steps.
The global step is ``model.optimizer.iterations``, which a ``.keras`` checkpoint
restores, so step numbers continue across a resume.

* :class:`Budget`: stop at ``max_steps`` or after ``max_minutes`` of wall time in all.
* :class:`LossLogger`: the training loss and speed (LossHook).
* :class:`Checkpoints`: ``last.keras`` + ``state.json`` every N steps, ``best.keras``
  on a better validation score (ModelSaverHook).
* :class:`Validation`: the real pipeline on the validation sections through a
  ``validate(model) -> (metrics, images)`` function the caller supplies (ValidationHook).
* :class:`WeightHistograms`, :class:`LayerVisualization`: images (HistogramHook,
  LayerVisualizationHook).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras

from emkit.training.state import TrainState, write_state


def global_step(model) -> int:
    """Optimizer steps done so far (continues across resumes)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class _Every(keras.callbacks.Callback):
    """Calls ``self.act(step)`` after every ``every``-th global step (never if every = 0)."""

    def __init__(self, every: int):
        super().__init__()
        self.every = int(every)

    def on_train_batch_end(self, batch, logs=None):
        """Calls :meth:`act` when the global step is a multiple of ``every``.

        Args:
            batch: the batch's index within the current epoch (Keras').
            logs: Keras' batch logs (the epoch's running mean ``loss`` and metrics), or None.
        """
        step = global_step(self.model)
        if self.every and step % self.every == 0:
            self.act(step, logs or {})

    def act(self, step: int, logs: dict) -> None:  # pragma: no cover - abstract
        """The hook's work, every ``every`` steps.

        Args:
            step: the global step (optimizer iterations, continued across resumes).
            logs: Keras' batch logs; ``{}`` when there are none.
        """
        raise NotImplementedError


class Clock:
    """Training wall time in minutes, counting earlier sessions of a resumed run."""

    def __init__(self, minutes_before: float = 0.0):
        self.minutes_before = float(minutes_before)
        self.start = time.monotonic()

    def minutes(self) -> float:
        return self.minutes_before + (time.monotonic() - self.start) / 60.0


class Budget(keras.callbacks.Callback):
    """Stops training at ``max_steps`` steps, or once ``max_minutes`` have passed in all."""

    def __init__(self, max_steps: int, max_minutes: float | None, clock: Clock):
        super().__init__()
        self.max_steps, self.max_minutes, self.clock = max_steps, max_minutes, clock
        self.reason = None

    def on_train_batch_end(self, batch, logs=None):
        """Sets ``model.stop_training`` (and ``reason``) once a budget is spent.

        Args:
            batch: the batch's index within the current epoch (unused).
            logs: Keras' batch logs (unused).
        """
        if global_step(self.model) >= self.max_steps:
            self.reason = f"reached train.max_steps={self.max_steps}"
        elif self.max_minutes is not None and self.clock.minutes() >= self.max_minutes:
            self.reason = f"reached train.max_minutes={self.max_minutes:g}"
        if self.reason:
            self.model.stop_training = True


class LossLogger(_Every):
    """Logs ``train_loss``, the mean batch loss over the steps since the last point, and speed.

    Keras reports the running mean of the epoch; the batch losses are recovered from
    it, so a point does not depend on where epochs (or a resumed run) begin.
    """

    def __init__(self, tracker, every: int, clock: Clock):
        super().__init__(every)
        self.tracker, self.clock = tracker, clock
        self._last = None
        self._epoch_total = 0.0  # sum of this epoch's batch losses so far
        self._window = [0.0, 0]  # sum and count of batch losses since the last point

    def on_epoch_begin(self, epoch, logs=None):
        """Restarts the epoch's loss sum (Keras' running mean restarts too).

        Args:
            epoch: the epoch's index (unused).
            logs: unused.
        """
        self._epoch_total = 0.0

    def on_train_batch_end(self, batch, logs=None):
        """Recovers the batch's loss from the epoch's running mean and adds it to the window.

        Args:
            batch: the batch's index within the current epoch, so the running mean
                covers ``batch + 1`` batches.
            logs: Keras' batch logs; ``logs["loss"]`` is the epoch's running mean loss.
        """
        total = float((logs or {}).get("loss", math.nan)) * (batch + 1)
        self._window[0] += total - self._epoch_total
        self._window[1] += 1
        self._epoch_total = total
        super().on_train_batch_end(batch, logs)

    def act(self, step, logs):
        """Logs ``train_loss`` (mean since the last point), ``elapsed_minutes`` and
        ``steps_per_second`` (from the second point on) at ``step``.

        Args:
            step: the global step.
            logs: Keras' batch logs (unused; the loss comes from the window).
        """
        now = time.monotonic()
        loss = self._window[0] / self._window[1] if self._window[1] else math.nan
        self._window = [0.0, 0]
        metrics = {"train_loss": loss, "elapsed_minutes": self.clock.minutes()}
        if self._last is not None and now > self._last[1]:
            metrics["steps_per_second"] = (step - self._last[0]) / (now - self._last[1])
        self._last = (step, now)
        self.tracker.log_metrics(metrics, step=step)


class Checkpoints(_Every):
    """Saves ``last.keras`` (with the optimizer) and ``state.json`` every N steps and at the end.

    Args:
        folder: the run's checkpoint folder.
        state: the run's :class:`TrainState`, updated in place.
        every: checkpoint period in steps.
        clock: the run's :class:`Clock`.
        best_metric, best_mode: what :meth:`consider` compares (``"max"`` or ``"min"``).
        export: ``export(model)``, the model to save as ``best.keras`` (e.g. the patch
            classifier of a dense trainer, :class:`emkit.training.dense.Exporter`);
            None: the trained model itself. ``last.keras`` is always the trained model,
            with its optimizer, to resume from.
    """

    def __init__(self, folder, state: TrainState, every: int, clock: Clock, *,
                 best_metric: str, best_mode: str = "max", export=None):
        super().__init__(every)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state, self.clock = state, clock
        self.best_metric, self.best_mode = best_metric, best_mode
        self.export = export or (lambda model: model)

    @property
    def last_path(self) -> Path:
        return self.folder / "last.keras"

    @property
    def best_path(self) -> Path:
        return self.folder / "best.keras"

    def on_epoch_begin(self, epoch, logs=None):
        """Records the epoch in the run's :class:`TrainState`.

        Args:
            epoch: the epoch's index, as Keras' ``fit`` counts it.
            logs: unused.
        """
        self.state.epoch = int(epoch)

    def act(self, step, logs):
        """Saves the checkpoint (:meth:`save`).

        Args:
            step: the global step (unused; :meth:`save` reads it from the model).
            logs: unused.
        """
        self.save()

    def on_train_end(self, logs=None):
        self.save()

    def save(self) -> None:
        """Writes ``last.keras`` then ``state.json``, each atomically."""
        save_model_atomic(self.model, self.last_path)
        self.state.step = global_step(self.model)
        self.state.elapsed_minutes = self.clock.minutes()
        write_state(self.folder, self.state)

    def consider(self, metrics: dict, step: int) -> bool:
        """Saves ``best.keras`` when ``metrics[best_metric]`` beats the best so far.

        Args:
            metrics: a validation's metrics.
            step: the step they were measured at.
        """
        score = metrics.get(self.best_metric)
        if score is None or (isinstance(score, float) and math.isnan(score)):
            return False
        best = self.state.best_score
        better = best is None or (score > best if self.best_mode == "max" else score < best)
        if better:
            save_model_atomic(self.export(self.model), self.best_path)
            self.state.best_score, self.state.best_step = float(score), int(step)
            write_state(self.folder, self.state)
        return better


def save_model_atomic(model, path: Path) -> None:
    """``model.save`` through a temporary ``.keras`` sibling renamed onto ``path``; a
    failed or killed save leaves ``path`` as it was.

    Args:
        model: the Keras model.
        path: the ``.keras`` file to write.
    """
    from emkit.io._common import atomic_path

    with atomic_path(Path(path)) as tmp:
        model.save(tmp)


class Validation(_Every):
    """Runs ``validate(model)`` every N steps and logs its metrics (``val_<key>``) and images.

    Args:
        validate: ``validate(model) -> (metrics, images)``: a dict of numbers (None
            skipped) and a dict of name -> RGB uint8 image.
        tracker: the run's tracker.
        every: validation period in steps (0: only when called directly).
        checkpoints: a :class:`Checkpoints` to offer each result for ``best.keras``.
        on_result: ``on_result(step, metrics)`` called after each validation is logged
            and offered to ``checkpoints`` (e.g. Optuna pruning, which raises to stop).
        clock: the run's :class:`Clock`; each validation then also logs
            ``val_train_minutes``, the x of the learning curves against wall clock.
    """

    def __init__(self, validate, tracker, every: int, checkpoints: Checkpoints | None = None,
                 on_result=None, clock: Clock | None = None):
        super().__init__(every)
        self.validate, self.tracker, self.checkpoints = validate, tracker, checkpoints
        self.on_result, self.clock = on_result, clock
        self.history: list[tuple[int, dict]] = []

    def act(self, step, logs):
        """Runs a validation (:meth:`run`) at ``step``.

        Args:
            step: the global step.
            logs: unused.
        """
        self.run(step)

    def run(self, step: int) -> dict:
        """One validation now, logged at ``step``; returns the metrics."""
        start = time.monotonic()
        minutes = None if self.clock is None else self.clock.minutes()
        metrics, images = self.validate(self.model)
        numbers = {f"val_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        numbers["val_seconds"] = time.monotonic() - start
        if minutes is not None:  # training minutes before this validation: the curves' x
            numbers["val_train_minutes"] = minutes
        self.tracker.log_metrics(numbers, step=step)
        for name, image in images.items():
            self.tracker.log_image(image, key=f"val_{name}", step=step)
        if self.checkpoints is not None:
            self.checkpoints.consider(metrics, step)
        self.history.append((step, metrics))
        if self.on_result is not None:
            self.on_result(step, metrics)
        return metrics


class WeightHistograms(_Every):
    """Logs an image of the kernels' histograms every N steps."""

    def __init__(self, tracker, every: int):
        super().__init__(every)
        self.tracker = tracker

    def act(self, step, logs):
        """Logs the ``weights`` image at ``step``.

        Args:
            step: the global step.
            logs: unused.
        """
        from emkit.training.plots import weight_histograms

        self.tracker.log_image(weight_histograms(self.model), key="weights", step=step)


class LayerVisualization(_Every):
    """Logs the feature maps of one fixed input every N steps.

    Args:
        tracker: the run's tracker.
        every: period in steps.
        x: the fixed input batch, shape (1, ...) as the model takes it.
    """

    def __init__(self, tracker, every: int, x):
        super().__init__(every)
        self.tracker, self.x = tracker, x

    def act(self, step, logs):
        """Logs the ``feature_maps`` image of ``x`` at ``step``.

        Args:
            step: the global step.
            logs: unused.
        """
        from emkit.training.plots import feature_maps

        self.tracker.log_image(feature_maps(self.model, self.x), key="feature_maps", step=step)


__all__ = [
    "Budget",
    "Checkpoints",
    "Clock",
    "LayerVisualization",
    "LossLogger",
    "Validation",
    "WeightHistograms",
    "global_step",
    "save_model_atomic",
]
