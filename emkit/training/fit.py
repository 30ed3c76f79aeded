"""Training is Keras ``compile`` plus ``fit`` with callbacks; this module holds the two calls.

:func:`compile_model` sets the optimizer and the channel-keeping loss;
:func:`load_checkpoint` reads a ``.keras`` checkpoint with its optimizer state;
:func:`fit_steps` runs ``fit`` until a :class:`~emkit.training.callbacks.Budget` stops it,
and on Ctrl-C saves a last checkpoint before it re-raises, so nothing is lost.

Mixed precision and several devices (:mod:`emkit.training.devices`) need nothing here beyond
building or loading the model inside :meth:`~emkit.training.devices.DevicePlan.model_scope` and
fitting inside :meth:`~emkit.training.devices.DevicePlan.run_scope`: Keras' ``compile`` wraps the
optimizer of a ``mixed_float16`` model in a ``LossScaleOptimizer``, the loss computes in
float32, and a distributed ``fit`` splits each global batch over the replicas.
"""

from __future__ import annotations

import contextlib
import math

import keras

from emkit.errors import InputError
from emkit.training.losses import CUSTOM_OBJECTS as LOSS_OBJECTS
from emkit.training.losses import ChannelBCE


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9):
    """A Keras optimizer by recipe name (``"adam"`` or ``"sgd"``).

    Args:
        name: ``"adam"`` or ``"sgd"`` (``train.optimizer``).
        learning_rate: the step size.
        momentum: SGD's momentum (Adam ignores it).
    """
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    raise InputError(f"train.optimizer: got {name!r}; allowed: adam, sgd")


def compile_model(model, *, optimizer: str = "adam", learning_rate: float = 1e-4,
                  momentum: float = 0.9):
    """Compiles ``model`` with :class:`~emkit.training.losses.ChannelBCE`; returns it.

    A model built under the ``mixed_float16`` policy gets its optimizer wrapped in a
    ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scaling) by Keras' ``compile``.

    Args:
        model: a built Keras model.
        optimizer, learning_rate, momentum: as for :func:`make_optimizer`.
    """
    model.compile(optimizer=make_optimizer(optimizer, learning_rate, momentum), loss=ChannelBCE())
    return model


def load_checkpoint(path, *, plan=None):
    """A compiled model, optimizer state included, from a ``.keras`` checkpoint.

    The checkpoint is loaded under the dtype policy it was trained with (read from its
    layers): Keras stores no policy for a functional model, and ``compile`` on load wraps
    the optimizer in the ``LossScaleOptimizer`` of a ``float16`` run only under that
    policy; without it the optimizer's state (its step count too) would not load.

    Args:
        path: the ``.keras`` file.
        plan: a :class:`~emkit.training.devices.DevicePlan`: the model's variables are made in
            its :meth:`~emkit.training.devices.DevicePlan.model_scope` (replicated over its
            devices); None: the current scope.
    """
    from emkit.models.saving import CUSTOM_OBJECTS, load_model
    from emkit.training.devices import precision

    with contextlib.ExitStack() as stack:
        stack.enter_context(precision(saved_mixed_precision(path)))
        if plan is not None:
            stack.enter_context(plan.model_scope())
        stack.enter_context(keras.saving.custom_object_scope({**CUSTOM_OBJECTS, **LOSS_OBJECTS}))
        return load_model(path, compile=True)


def saved_mixed_precision(path) -> str:
    """The ``train.mixed_precision`` word of a ``.keras`` file, from its layers' policies.

    Returns:
        ``"float16"`` or ``"bfloat16"`` when a layer computes in that type, else
        ``"none"`` (also for a file that is not a readable ``.keras`` archive).
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("config.json").decode()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return "none"
    if '"mixed_float16"' in text:
        return "float16"
    if '"mixed_bfloat16"' in text:
        return "bfloat16"
    return "none"


def fit_steps(model, sampler, *, max_steps: int, steps_done: int, callbacks,
              checkpoints=None, verbose: int = 0):
    """Runs ``model.fit`` on ``sampler`` from step ``steps_done`` until the budget stops it.

    Global step ``s`` always trains on batch ``s % L`` of the sampler's epoch
    ``s // L + 1`` (``L = len(sampler)``; Keras' ``fit`` ends one sampler epoch before
    its first, see :mod:`emkit.sampling.sampler`). A run resumed from a checkpoint at
    step ``s`` therefore draws the batches an uninterrupted run would: a checkpoint
    taken inside an epoch is resumed by a first ``fit`` over the rest of that epoch
    (:class:`EpochTail`), then whole epochs. With the optimizer state of the
    checkpoint, the resumed weights equal the uninterrupted run's, bit for bit.

    Args:
        model: a compiled model.
        sampler: a ``keras.utils.PyDataset`` of ``(x, y, w)`` whose batches depend on
            its ``epoch`` attribute and the batch index only; ``len(sampler)`` is the
            epoch length.
        max_steps: the step budget in all (the Budget callback stops exactly there).
        steps_done: steps already done (a resumed run's ``optimizer.iterations``).
        callbacks: the Keras callbacks, a :class:`Budget` among them.
        checkpoints: a :class:`~emkit.training.callbacks.Checkpoints` that saves on Ctrl-C.
        verbose: Keras' verbosity.

    Returns:
        The last Keras ``History``, or None when nothing was left to do.
    """
    from emkit.training.callbacks import global_step

    if max_steps - steps_done <= 0:
        return None
    per_epoch = len(sampler)
    epoch, first = divmod(int(steps_done), per_epoch)
    callbacks = list(callbacks)
    try:
        if first:  # the rest of the epoch that the checkpoint was taken in
            sampler.epoch = epoch
            history = model.fit(EpochTail(sampler, first), epochs=epoch + 1,
                                initial_epoch=epoch, callbacks=callbacks, verbose=verbose)
            if model.stop_training:
                return history
            epoch += 1
        sampler.epoch = epoch
        left = max_steps - global_step(model)
        return model.fit(sampler, epochs=epoch + math.ceil(left / per_epoch) + 1,
                         initial_epoch=epoch, callbacks=callbacks, verbose=verbose)
    except KeyboardInterrupt:
        if checkpoints is not None:
            checkpoints.save()
        raise


class EpochTail(keras.utils.PyDataset):
    """The batches ``first, first + 1, ...`` of ``sampler``'s epoch, as a dataset of its own.

    Its ``epoch`` is the sampler's, and ending its epoch ends the sampler's.
    """

    def __init__(self, sampler, first: int):
        super().__init__(workers=sampler.workers, use_multiprocessing=sampler.use_multiprocessing,
                         max_queue_size=sampler.max_queue_size)
        if not 0 < first < len(sampler):
            raise ValueError(f"first: expected 0 < first < {len(sampler)}, got {first}")
        self.sampler, self.first = sampler, int(first)

    def __len__(self) -> int:
        return len(self.sampler) - self.first

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of an epoch tail of {len(self)} batches")
        return self.sampler[self.first + index]

    def on_epoch_begin(self):
        self.sampler.on_epoch_begin()

    def on_epoch_end(self):
        self.sampler.on_epoch_end()


__all__ = ["EpochTail", "compile_model", "fit_steps", "load_checkpoint", "make_optimizer", "saved_mixed_precision"]
