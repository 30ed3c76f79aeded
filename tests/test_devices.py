"""Devices: discovery, train.devices / train.mixed_precision, data-parallel steps, portability.

Several devices are tested on a CPU: a subprocess configures two logical CPU devices
(TensorFlow: ``tf.config.set_logical_device_configuration``; JAX, when installed:
``--xla_force_host_platform_device_count=2``) before the backend starts.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from emkit.errors import InputError
from emkit.recipes import load_recipe
from emkit.training.devices import (
    check_devices,
    describe,
    list_devices,
    plan_devices,
    precision,
)

ROOT = Path(__file__).resolve().parents[1]
HAS_GPU = os.path.exists("/dev/nvidia0")


# --------------------------------------------------------------------------- discovery, plans


@pytest.mark.skipif(HAS_GPU, reason="this check is for a machine without a GPU")
def test_a_cpu_machine_finds_no_gpu_and_trains_on_the_default_device():
    found = list_devices()
    assert found["accelerators"] == [] and found["cpus"] == ["cpu:0"]
    plan = plan_devices("auto", batch_size=4)
    assert (plan.strategy, plan.devices, plan.replicas, plan.per_replica_batch) == (
        "default", ("cpu:0",), 1, 4)
    info = describe(plan)
    assert info["devices.accelerators"] == "none" and info["devices.strategy"] == "default"
    assert info["devices.backend"] == keras.backend.backend()
    assert info["devices.dtype_policy"] == "float32"


def test_cpu_one_and_bad_device_counts():
    assert plan_devices("cpu", batch_size=3).strategy == "cpu"
    assert plan_devices(1, batch_size=3).replicas == 1
    count = len(list_devices()["accelerators"] or list_devices()["cpus"])
    with pytest.raises(InputError, match=rf"train.devices: asked for {count + 1} devices"):
        plan_devices(count + 1, batch_size=64)
    for bad in ("gpu", 0, -2, 1.5, True, None):
        with pytest.raises(InputError, match="train.devices: got"):
            check_devices(bad)


def test_several_devices_split_the_global_batch_or_refuse_it(monkeypatch):
    from emkit.training import devices

    found = {"accelerators": ["gpu:0", "gpu:1", "gpu:2"], "cpus": ["cpu:0"]}
    monkeypatch.setattr(devices, "list_devices", lambda: found)
    plan = devices.plan_devices(2, batch_size=4)
    assert (plan.replicas, plan.per_replica_batch, plan.devices) == (2, 2, ("gpu:0", "gpu:1"))
    assert plan.strategy == {"tensorflow": "mirrored", "jax": "data_parallel"}[plan.backend]
    assert plan.describe()["devices.training"] == "gpu:0,gpu:1"
    with pytest.raises(InputError, match="sampler.batch_size: 3 does not split evenly"):
        devices.plan_devices(2, batch_size=3)
    auto = devices.plan_devices("auto", batch_size=4)  # 3 GPUs, a batch of 4: 2 train
    assert auto.replicas == 2 and "2 used" in auto.reason
    assert devices.plan_devices("auto", batch_size=1).strategy == "default"


@pytest.mark.parametrize("key, value, match", [
    ("train.mixed_precision", "half", "train.mixed_precision: got 'half'; allowed: none, float16"),
    ("train.mixed_precision", "1", "train.mixed_precision: expected str"),
    ("train.devices", "gpu", "train.devices: got 'gpu'; allowed: auto, cpu"),
    ("train.devices", "0", "train.devices: got 0"),
])
def test_bad_recipe_values_name_the_key(key, value, match):
    with pytest.raises(InputError, match=match):
        load_recipe("isbi_n4", [f"{key}={value}"])


def test_recipe_values_reach_the_plan():
    from emkit.recipes.build import device_plan

    recipe = load_recipe("isbi_n4", ["train.devices=cpu", "train.mixed_precision=bfloat16"])
    plan = device_plan(recipe)
    assert (plan.strategy, plan.dtype_policy, plan.batch_size) == ("cpu", "mixed_bfloat16", 16)


# --------------------------------------------------------------------------- mixed precision


def test_precision_sets_and_restores_the_global_policy():
    before = keras.config.dtype_policy().name
    with precision("float16") as policy:
        assert policy == keras.config.dtype_policy().name == "mixed_float16"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(InputError, match="train.mixed_precision"), precision("fp8"):
        pass


@pytest.mark.parametrize("name", ["n4", "unet2d", "rsunet"])
def test_mixed_models_compute_in_bfloat16_and_output_float32(name):
    from emkit.models import build_model
    from emkit.models.testing import small_spec

    with precision("bfloat16"):
        model = build_model(small_spec(name))
    convs = [layer for layer in model.layers if "conv" in type(layer).__name__.lower()]
    assert convs and all(layer.compute_dtype == "bfloat16" for layer in convs)
    assert all(w.dtype == "float32" for w in model.weights)  # float32 master weights
    assert model.output.dtype == "float32"
    assert model.layers[-1].dtype_policy.name == "float32"


def _train_steps(model, steps, seed=0):
    from emkit.models.testing import random_batch
    from emkit.training import Budget, Clock, fit_steps

    x, y = random_batch(model, 4, seed=seed)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, index):
            return x, y, np.ones_like(y)

    return fit_steps(model, Batches(), max_steps=steps, steps_done=0,
                     callbacks=[Budget(steps, None, Clock())]), x


def test_bfloat16_trains_and_its_checkpoint_reloads(tmp_path):
    from emkit.models import build_model
    from emkit.models.testing import small_spec
    from emkit.training import compile_model, load_checkpoint

    with precision("bfloat16"):
        model = compile_model(build_model(small_spec("n4")), learning_rate=1e-3)
    history, x = _train_steps(model, 3)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    pred = model.predict_on_batch(x)
    assert pred.dtype == np.float32
    model.save(tmp_path / "m.keras")
    loaded = load_checkpoint(tmp_path / "m.keras")
    assert loaded.layers[1].dtype_policy.name == "mixed_bfloat16"
    assert int(loaded.optimizer.iterations) == 3
    np.testing.assert_array_equal(loaded.predict_on_batch(x), pred)


def test_float16_scales_the_loss_and_its_checkpoint_resumes(tmp_path):
    from emkit.models import build_model
    from emkit.models.testing import small_spec
    from emkit.training import compile_model, load_checkpoint
    from emkit.training.fit import saved_mixed_precision

    with precision("float16"):
        model = compile_model(build_model(small_spec("n4")), learning_rate=1e-3)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history, _ = _train_steps(model, 2)
    assert np.all(np.isfinite(history.history["loss"]))
    model.save(tmp_path / "m.keras")
    assert saved_mixed_precision(tmp_path / "m.keras") == "float16"
    loaded = load_checkpoint(tmp_path / "m.keras")  # under the default policy
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    assert int(loaded.optimizer.iterations) == 2
    assert float(loaded.optimizer.dynamic_scale) == float(model.optimizer.dynamic_scale)


# --------------------------------------------------------------------------- several devices

TWO_DEVICES = r'''
import json, sys
import keras
import numpy as np

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from emkit.training.devices import plan_devices
from emkit.recipes.run import run_recipe
from emkit.recipes import load_recipe
from emkit.recipes.build import build_network, make_sampler, prepare_data
from emkit.tracking import MemoryTracker
from emkit.training import Budget, Clock, fit_steps

data_root, out, with_run = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
common = [
    "train.max_steps=2", "train.steps_per_epoch=2", "train.log_every=1",
    "train.validate_every=2", "train.checkpoint_every=1", "train.histogram_every=2",
    "train.visualize_every=2", "sampler.batch_size=4", "sampler.workers=1",
    "model.overrides.width_factor=0.0417", f"data.root={data_root}", "data.crop=[96,96]",
    "evaluation.max_sections=1", "postprocess.tune=false",
    # SGD: a step proportional to the gradient (Adam's first step hides its scale)
    "train.optimizer=sgd", "train.learning_rate=0.5", "train.momentum=0.0",
]
recipe = load_recipe("isbi_n4", common)
data = prepare_data(recipe)


class OneBatch(keras.utils.PyDataset):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.batch


result, weights = {}, {}
for n in (1, 2):
    plan = plan_devices(n, batch_size=4)
    with plan.run_scope():
        model = build_network(recipe, plan)
        before = model.get_weights()
        batch = make_sampler(recipe, data, model)[0]
        fit_steps(model, OneBatch(batch), max_steps=1, steps_done=0,
                  callbacks=[Budget(1, None, Clock())])
    weights[n] = model.get_weights()
    result[f"strategy{n}"] = plan.strategy
    result[f"moved{n}"] = float(max(np.abs(a - b).max() for a, b in zip(weights[n], before)))
result["difference"] = float(max(np.abs(a - b).max() for a, b in zip(weights[1], weights[2])))
if with_run:
    two = [*common, "train.devices=2", "train.mixed_precision=bfloat16"]
    tracker = MemoryTracker()
    run = run_recipe(load_recipe("isbi_n4", two), output=f"{out}/run", tracker=tracker)
    result["tags"] = {k: v for k, v in tracker.tags.items() if k.startswith("devices.")}
    result["run"] = [run.steps, tracker.status, run.metrics["adapted_rand_error"],
                     sorted(k for k, _, _ in tracker.images)]
    again = run_recipe(load_recipe("isbi_n4", [*two, "train.max_steps=3"]), output=f"{out}/run",
                       tracker=MemoryTracker(), resume=True)
    result["resumed"] = [again.resumed, again.steps]
    from emkit.models.saving import load_model

    saved = load_model(f"{out}/run/model.keras", compile=False)
    result["saved_policy"] = saved.layers[1].dtype_policy.name
    result["saved_output"] = str(saved.output.dtype)
print("RESULT " + json.dumps(result))
'''


def _run_two_devices(backend, shared_data, tmp_path, *, with_run, extra_env=None):
    script = tmp_path / "two_devices.py"
    script.write_text(TWO_DEVICES)
    env = {**os.environ, "KERAS_BACKEND": backend, "NO_ALBUMENTATIONS_UPDATE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", **(extra_env or {})}
    done = subprocess.run(
        [sys.executable, str(script), str(shared_data), str(tmp_path), "1" if with_run else "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_two_tensorflow_devices_step_like_one_and_run_a_recipe(shared_data, tmp_path):
    result = _run_two_devices("tensorflow", shared_data, tmp_path, with_run=True)
    assert (result["strategy1"], result["strategy2"]) == ("default", "mirrored")
    # One synchronous data-parallel step on the global batch == one single-device step.
    assert result["moved1"] > 1e-2 and result["difference"] <= 1e-5
    tags = result["tags"]
    assert (tags["devices.strategy"], tags["devices.replicas"], tags["devices.per_replica_batch"],
            tags["devices.dtype_policy"]) == ("mirrored", 2, 2, "mixed_bfloat16")
    steps, status, score, images = result["run"]
    assert (steps, status) == (2, "FINISHED") and 0 <= score <= 1
    assert images == ["feature_maps", "val_overlay", "weights"]
    assert result["resumed"] == [True, 3]
    assert (result["saved_policy"], result["saved_output"]) == ("mixed_bfloat16", "float32")


def test_two_jax_devices_step_like_one(shared_data, tmp_path):
    pytest.importorskip("jax")
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    result = _run_two_devices("jax", shared_data, tmp_path, with_run=False,
                              extra_env={"XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"})
    assert (result["strategy1"], result["strategy2"]) == ("default", "data_parallel")
    assert result["moved1"] > 1e-2 and result["difference"] <= 1e-5


# --------------------------------------------------------------------------- portability

BLOCKED = ("mlflow", "optuna", "albumentations", "zarr", "dask")


def test_training_imports_without_the_optional_integrations():
    """A GPU box with only Keras, a backend and the numeric stack can train (benchmarks/gpu.py)."""
    code = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None\n"
        "import emkit.training.devices, emkit.models, emkit.training.fit, emkit.sampling\n"
        "import emkit.recipes.build, emkit.datasets, emkit.inference, emkit.recipes.run\n"
        "sys.path.insert(0, 'benchmarks')\n"
        "import gpu\n"
        f"assert not any(sys.modules.get(n) for n in {BLOCKED!r})\n"
        "print('imported')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-3000:]
