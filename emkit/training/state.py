"""The resume state of a run: a small ``state.json`` beside the checkpoints, written atomically."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "state.json"


@dataclass
class TrainState:
    """What a resumed run needs besides the ``last.keras`` checkpoint.

    Attributes:
        run_id: the tracking run to continue.
        recipe: the recipe's name.
        step: optimizer steps done (equals the checkpoint's ``optimizer.iterations``).
        epoch: Keras epochs begun (the sampler's epoch, so a resume draws new batches).
        elapsed_minutes: training wall time so far, validations included.
        best_score: the best ``train.best_metric`` so far, or None.
        best_step: the step of ``best.keras``, or None.
        finished: True once the run ended normally (its outputs are complete).
    """

    run_id: str
    recipe: str = ""
    step: int = 0
    epoch: int = 0
    elapsed_minutes: float = 0.0
    best_score: float | None = None
    best_step: int | None = None
    finished: bool = False


def read_state(folder) -> TrainState | None:
    """The state in ``folder``, or None when there is none."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(TrainState)}
    return TrainState(**{k: v for k, v in data.items() if k in names})


def write_state(folder, state: TrainState) -> Path:
    """Writes ``state.json`` atomically (a temporary file renamed into place).

    Args:
        folder: the run's checkpoint folder.
        state: the state to write.

    Returns:
        The file written.
    """
    from emkit.io import write_text

    return write_text(Path(folder) / STATE_FILE,
                      json.dumps(dataclasses.asdict(state), indent=2) + "\n")


__all__ = ["STATE_FILE", "TrainState", "read_state", "write_state"]
