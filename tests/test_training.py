"""Training pieces: the loss, the resume state, the budget and checkpoint callbacks."""

import numpy as np
import pytest

from emkit.training import (
    Budget,
    ChannelBCE,
    Checkpoints,
    Clock,
    TrainState,
    compile_model,
    fit_steps,
    global_step,
    load_checkpoint,
    read_state,
    write_state,
)


def test_channel_bce_keeps_channels():
    y = np.array([[[1.0, 0.0]]], np.float32)
    p = np.array([[[0.5, 0.5]]], np.float32)
    w = np.array([[[1.0, 0.0]]], np.float32)
    # ln 2 on one element, weight 0 on the other, averaged over both elements
    assert float(ChannelBCE()(y, p, sample_weight=w)) == pytest.approx(np.log(2) / 2, rel=1e-5)


def test_state_round_trip(tmp_path):
    assert read_state(tmp_path) is None
    state = TrainState(run_id="abc", step=4, epoch=2, best_score=0.5, best_step=4)
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert not list(tmp_path.glob(".*tmp"))


class _Data:
    """A tiny PyDataset stand-in: 3 batches of random (x, y, w)."""

    def __new__(cls):
        import keras

        class Data(keras.utils.PyDataset):
            def __len__(self):
                return 3

            def __getitem__(self, i):
                rng = np.random.default_rng(i)
                x = rng.random((2, 8, 8, 1), dtype=np.float32)
                return x, (x > 0.5).astype("float32"), np.ones_like(x)

        return Data()


def _model():
    import keras

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    return compile_model(keras.Model(inputs, outputs), learning_rate=0.01)


def test_budget_stops_at_max_steps_and_checkpoint_resumes(tmp_path):
    model = _model()
    state = TrainState(run_id="r")
    clock = Clock()
    checkpoints = Checkpoints(tmp_path, state, 2, clock, best_metric="score")
    budget = Budget(5, None, clock)
    fit_steps(model, _Data(), max_steps=5, steps_done=0,
              callbacks=[budget, checkpoints])
    assert global_step(model) == 5 and budget.reason == "reached train.max_steps=5"
    assert read_state(tmp_path).step == 5
    resumed = load_checkpoint(tmp_path / "last.keras")
    assert global_step(resumed) == 5  # optimizer state came back
    assert checkpoints.consider({"score": 0.3}, 5) and not checkpoints.consider({"score": 0.2}, 6)
    assert read_state(tmp_path).best_score == 0.3 and (tmp_path / "best.keras").exists()
    fit_steps(resumed, _Data(), max_steps=7, steps_done=5,
              callbacks=[Budget(7, None, clock)])
    assert global_step(resumed) == 7


def test_budget_by_minutes():
    model = _model()
    budget = Budget(1000, 1e-9, Clock(minutes_before=1.0))
    fit_steps(model, _Data(), max_steps=1000, steps_done=0, callbacks=[budget])
    assert global_step(model) == 1 and "max_minutes" in budget.reason
