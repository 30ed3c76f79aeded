"""Training is Keras ``compile`` plus ``fit`` with callbacks; this module holds the two calls.

:func:`compile_model` sets the optimizer and the channel-keeping loss;
:func:`load_checkpoint` reads a ``.keras`` checkpoint with its optimizer state;
:func:`fit_steps` runs ``fit`` until a :class:`~emkit.training.callbacks.Budget` stops it,
and on Ctrl-C saves a last checkpoint before it re-raises, so nothing is lost.
"""

from __future__ import annotations

import math

import keras

from emkit.errors import InputError
from emkit.training.losses import CUSTOM_OBJECTS as LOSS_OBJECTS
from emkit.training.losses import ChannelBCE


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9):
    """A Keras optimizer by recipe name (``"adam"`` or ``"sgd"``)."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    raise InputError(f"train.optimizer: got {name!r}; allowed: adam, sgd")


def compile_model(model, *, optimizer: str = "adam", learning_rate: float = 1e-4,
                  momentum: float = 0.9):
    """Compiles ``model`` with :class:`~emkit.training.losses.ChannelBCE`; returns it."""
    model.compile(optimizer=make_optimizer(optimizer, learning_rate, momentum), loss=ChannelBCE())
    return model


def load_checkpoint(path):
    """A compiled model, optimizer state included, from a ``.keras`` checkpoint."""
    from emkit.models.saving import CUSTOM_OBJECTS, load_model

    with keras.saving.custom_object_scope({**CUSTOM_OBJECTS, **LOSS_OBJECTS}):
        return load_model(path, compile=True)


def fit_steps(model, sampler, *, max_steps: int, steps_done: int, initial_epoch: int,
              callbacks, checkpoints=None, verbose: int = 0):
    """Runs ``model.fit`` on ``sampler`` from ``initial_epoch`` until the budget stops it.

    Args:
        model: a compiled model.
        sampler: a ``keras.utils.PyDataset`` of ``(x, y, w)``; ``len(sampler)`` is the
            epoch length.
        max_steps: the step budget in all (the Budget callback stops exactly there).
        steps_done: steps already done (a resumed run).
        initial_epoch: the first epoch's number (the resumed epoch).
        callbacks: the Keras callbacks, a :class:`Budget` among them.
        checkpoints: a :class:`~emkit.training.callbacks.Checkpoints` that saves on Ctrl-C.
        verbose: Keras' verbosity.

    Returns:
        The Keras ``History``, or None when nothing was left to do.
    """
    remaining = max_steps - steps_done
    if remaining <= 0:
        return None
    epochs = initial_epoch + math.ceil(remaining / len(sampler)) + 1
    try:
        return model.fit(sampler, epochs=epochs, initial_epoch=initial_epoch,
                         callbacks=list(callbacks), verbose=verbose)
    except KeyboardInterrupt:
        if checkpoints is not None:
            checkpoints.save()
        raise


__all__ = ["compile_model", "fit_steps", "load_checkpoint", "make_optimizer"]
