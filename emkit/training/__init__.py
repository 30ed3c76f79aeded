"""Training: Keras ``compile`` + ``fit`` + callbacks, and what a resumed run needs.

* :mod:`~emkit.training.losses`: :class:`ChannelBCE`, per-voxel per-channel weighted BCE.
* :mod:`~emkit.training.callbacks`: the thesis's hooks as Keras callbacks (loss,
  validation, checkpoints, weight histograms, feature maps) and the step/time budget.
* :mod:`~emkit.training.state`: ``state.json``, the resume record.
* :mod:`~emkit.training.fit`: :func:`compile_model`, :func:`fit_steps`, :func:`load_checkpoint`.
* :mod:`~emkit.training.plots`: images for the tracker.

Training knows nothing of inference or MLflow: the validation pipeline and the tracker
come in as arguments (see :func:`emkit.recipes.run.run_recipe`).
"""

from emkit.training.callbacks import (
    Budget,
    Checkpoints,
    Clock,
    LayerVisualization,
    LossLogger,
    Validation,
    WeightHistograms,
    global_step,
    save_model_atomic,
)
from emkit.training.fit import compile_model, fit_steps, load_checkpoint, make_optimizer
from emkit.training.losses import ChannelBCE
from emkit.training.state import TrainState, read_state, write_state

__all__ = [
    "Budget",
    "ChannelBCE",
    "Checkpoints",
    "Clock",
    "LayerVisualization",
    "LossLogger",
    "TrainState",
    "Validation",
    "WeightHistograms",
    "compile_model",
    "fit_steps",
    "global_step",
    "load_checkpoint",
    "make_optimizer",
    "read_state",
    "save_model_atomic",
    "write_state",
]
