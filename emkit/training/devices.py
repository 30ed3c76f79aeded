"""Devices: what the Keras backend sees, mixed precision, and training on several devices.

emkit code talks to Keras only, so one recipe runs on TensorFlow, JAX or PyTorch. This
module is the one place that asks the backend itself about devices:

* :func:`list_devices`: the GPUs (or TPUs) and CPUs the backend sees, TensorFlow memory
  growth switched on first (:func:`enable_memory_growth`), so one process does not hold
  a whole GPU.
* :func:`plan_devices`: from ``train.devices`` (``auto``, ``cpu`` or a number) and the
  global batch size, a :class:`DevicePlan`: which devices train, and how.
* :meth:`DevicePlan.model_scope` / :meth:`DevicePlan.run_scope`: the contexts that build
  the model and run ``fit``. Several GPUs train by synchronous data parallelism, each
  replica on ``batch_size / replicas`` samples of every global batch, the gradients
  summed across replicas: with TensorFlow a ``tf.distribute.MirroredStrategy`` (Keras 3's
  ``keras.distribution`` is a prototype on TensorFlow), with JAX
  ``keras.distribution.DataParallel``. PyTorch trains on one device.
* :func:`precision`: ``train.mixed_precision`` (``none``, ``float16``, ``bfloat16``) as
  the Keras global dtype policy while the model is built. Every emkit model ends in a
  float32 sigmoid and the losses compute in float32; with ``float16``, ``compile`` wraps
  the optimizer in a ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scaling).
* :meth:`DevicePlan.describe`: the plan and the hardware as a flat dict for the tracker.

Nothing here imports a backend at import time.

>>> plan = plan_devices("cpu", batch_size=4)
>>> plan.replicas, plan.per_replica_batch, plan.strategy
(1, 4, 'cpu')
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass, field

from emkit.errors import InputError

#: ``train.mixed_precision`` word -> Keras dtype policy.
MIXED_PRECISION = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
DEVICE_WORDS = ("auto", "cpu")


def backend() -> str:
    """The Keras backend's name (``KERAS_BACKEND``, as Keras resolved it)."""
    import keras

    return keras.backend.backend()


# --------------------------------------------------------------------------- discovery


@functools.cache
def enable_memory_growth() -> bool:
    """TensorFlow: allocate GPU memory as needed instead of all of it at the first op.

    Must run before TensorFlow initialises its GPUs; afterwards it changes nothing.
    Other backends: nothing to do (JAX's preallocation is ``XLA_PYTHON_CLIENT_PREALLOCATE``).

    Returns:
        True when memory growth is on for every visible GPU.
    """
    if backend() != "tensorflow":
        return False
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # GPUs already initialised
        return all(tf.config.experimental.get_memory_growth(gpu) for gpu in gpus)
    return bool(gpus)


def list_devices() -> dict[str, list[str]]:
    """The devices the backend sees, by kind, as Keras names them.

    Returns:
        ``{"accelerators": ["gpu:0", ...], "cpus": ["cpu:0", ...]}``. With TensorFlow these
        are logical devices (several CPUs only when configured with
        ``tf.config.set_logical_device_configuration``; JAX: with
        ``XLA_FLAGS=--xla_force_host_platform_device_count=N``).
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        enable_memory_growth()
        logical = tf.config.list_logical_devices()
        accelerators = [f"{d.device_type.lower()}:{d.name.split(':')[-1]}"
                        for d in logical if d.device_type in ("GPU", "TPU")]
        cpus = [f"cpu:{d.name.split(':')[-1]}" for d in logical if d.device_type == "CPU"]
    elif name == "jax":
        import jax

        accelerators = [f"{d.platform}:{d.id}" for d in jax.devices() if d.platform != "cpu"]
        cpus = [f"cpu:{d.id}" for d in jax.devices("cpu")]
    elif name == "torch":
        import torch

        accelerators = [f"gpu:{i}" for i in range(torch.cuda.device_count())]
        cpus = ["cpu:0"]
    else:
        accelerators, cpus = [], ["cpu:0"]
    return {"accelerators": accelerators, "cpus": cpus}


def device_names() -> list[str]:
    """Human-readable accelerator names (``NVIDIA H200``, ...), one per accelerator."""
    name = backend()
    try:
        if name == "tensorflow":
            import tensorflow as tf

            return [tf.config.experimental.get_device_details(d).get("device_name", d.name)
                    for d in tf.config.list_physical_devices("GPU")]
        if name == "jax":
            import jax

            return [d.device_kind for d in jax.devices() if d.platform != "cpu"]
        if name == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except (RuntimeError, ValueError, AttributeError):  # names are for the record only
        return []
    return []


# --------------------------------------------------------------------------- checks


def check_mixed_precision(value) -> str:
    """``value`` if it is a ``train.mixed_precision`` word, else an InputError."""
    if value not in MIXED_PRECISION:
        raise InputError(
            f"train.mixed_precision: got {value!r}; allowed: {', '.join(MIXED_PRECISION)}"
        )
    return value


def check_devices(value):
    """``value`` if it is a ``train.devices`` value (``auto``, ``cpu`` or an int >= 1)."""
    if isinstance(value, str) and value in DEVICE_WORDS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise InputError(
        f"train.devices: got {value!r}; allowed: auto, cpu, or a number of devices >= 1"
    )


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class DevicePlan:
    """Which devices train, and how.

    Attributes:
        backend: the Keras backend.
        strategy: ``"default"`` (the backend's own placement: its first GPU if any),
            ``"cpu"`` (pinned to the CPU), ``"mirrored"`` (TensorFlow
            ``MirroredStrategy``) or ``"data_parallel"`` (``keras.distribution.DataParallel``).
        devices: the training devices, Keras names (``gpu:0``, ...).
        batch_size: the global batch (the sampler's), split evenly over the replicas.
        mixed_precision: the ``train.mixed_precision`` word.
        found: what :func:`list_devices` found.
        reason: how ``train.devices`` was resolved, for the record.
    """

    backend: str
    strategy: str
    devices: tuple[str, ...]
    batch_size: int
    mixed_precision: str = "none"
    found: dict = field(default_factory=dict, compare=False)
    reason: str = ""

    @property
    def replicas(self) -> int:
        return len(self.devices) if self.strategy in ("mirrored", "data_parallel") else 1

    @property
    def per_replica_batch(self) -> int:
        return self.batch_size // self.replicas

    @property
    def dtype_policy(self) -> str:
        return MIXED_PRECISION[self.mixed_precision]

    def with_mixed_precision(self, mixed_precision: str) -> DevicePlan:
        """The same plan with another ``mixed_precision`` (e.g. a checkpoint's own)."""
        return dataclasses.replace(self, mixed_precision=check_mixed_precision(mixed_precision))

    def model_scope(self):
        """The context to build, compile or load the model in (where its variables live)."""
        if self.strategy == "mirrored":
            return _mirrored(self.devices).scope()
        return self.run_scope()

    def run_scope(self):
        """The context to train and validate in.

        With ``mirrored`` it is empty: the model keeps the strategy it was built under,
        and a model built in it for inference would return each batch once per replica
        (see :meth:`inference_model`).
        """
        if self.strategy == "data_parallel":
            return _data_parallel(self.devices).scope()
        if self.strategy == "cpu":
            import keras

            return keras.device("cpu:0")
        return contextlib.nullcontext()

    def inference_model(self, model):
        """``model``, or under ``mirrored`` a single-device copy with the same weights.

        Keras' TensorFlow ``predict_on_batch`` runs a mirrored model on the whole batch on
        every replica and concatenates the results; a plain copy predicts correctly.
        """
        if self.strategy != "mirrored":
            return model
        import keras

        from emkit.models.saving import CUSTOM_OBJECTS

        with keras.saving.custom_object_scope(CUSTOM_OBJECTS):
            copy = keras.Model.from_config(model.get_config())
        copy.set_weights(model.get_weights())
        return copy

    def describe(self) -> dict:
        """The plan and the hardware, flat, for the tracker's params."""
        return {
            "devices.backend": self.backend,
            "devices.strategy": self.strategy,
            "devices.replicas": self.replicas,
            "devices.training": ",".join(self.devices),
            "devices.per_replica_batch": self.per_replica_batch,
            "devices.global_batch": self.batch_size,
            "devices.dtype_policy": self.dtype_policy,
            "devices.accelerators": ",".join(self.found.get("accelerators", [])) or "none",
            "devices.reason": self.reason,
        }


def describe(plan: DevicePlan | None = None) -> dict:
    """Backend, versions, the devices found (with names) and ``plan``, as one flat dict."""
    import keras

    name = backend()
    info = {"devices.backend": name, "devices.keras_version": keras.__version__}
    try:
        module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[name]
        info[f"devices.{name}_version"] = __import__(module).__version__
    except (KeyError, ImportError):
        pass
    found = plan.found if plan is not None else list_devices()
    info["devices.accelerators"] = ",".join(found["accelerators"]) or "none"
    info["devices.cpus"] = len(found["cpus"])
    names = device_names()
    if names:
        info["devices.accelerator_names"] = ",".join(sorted(set(names)))
    if plan is not None:
        info.update(plan.describe())
    return info


def plan_devices(devices="auto", *, batch_size: int, mixed_precision: str = "none") -> DevicePlan:
    """Resolves ``train.devices`` against what the backend sees.

    * ``auto``: every accelerator, data parallel when there are several (at most as many
      as divide ``batch_size``: a batch of 4 on 8 GPUs trains on 4); one accelerator or
      none: the backend's default placement.
    * ``cpu``: the CPU, even where a GPU is.
    * ``N``: the first N accelerators, or without accelerators the first N CPU devices
      (logical CPUs that TensorFlow or JAX was configured with; used in tests). N must
      divide ``batch_size``.

    Args:
        devices: ``"auto"``, ``"cpu"`` or an int >= 1.
        batch_size: the global batch size (``sampler.batch_size``).
        mixed_precision: ``"none"``, ``"float16"`` or ``"bfloat16"``.

    Raises:
        InputError: a bad value, more devices asked for than found, a batch that does
            not split evenly, several devices on the torch backend.
    """
    devices = check_devices(devices)
    check_mixed_precision(mixed_precision)
    name = backend()
    found = list_devices()
    accelerators, cpus = found["accelerators"], found["cpus"]

    def plan(strategy, chosen, reason):
        """The :class:`DevicePlan` of this backend, batch and precision.

        Args:
            strategy: ``"default"``, ``"cpu"``, ``"mirrored"`` or ``"data_parallel"``.
            chosen: the training devices' names.
            reason: how ``train.devices`` was resolved.
        """
        return DevicePlan(name, strategy, tuple(chosen), int(batch_size), mixed_precision,
                          found, reason)

    if devices == "cpu":
        return plan("cpu", cpus[:1], "train.devices=cpu")
    if devices == "auto":
        if len(accelerators) <= 1:
            chosen = accelerators or cpus[:1]
            return plan("default", chosen, f"auto: {len(accelerators)} accelerator(s)")
        n = max(k for k in range(1, len(accelerators) + 1) if batch_size % k == 0)
        reason = f"auto: {len(accelerators)} accelerators"
        if n < len(accelerators):
            reason += f", {n} used (largest count dividing sampler.batch_size={batch_size})"
        if n == 1 or name == "torch":
            return plan("default", accelerators[:1], reason + ", one used")
        return plan(_parallel_strategy(name), accelerators[:n], reason)
    pool, kind = (accelerators, "accelerator") if accelerators else (cpus, "CPU device")
    if devices > len(pool):
        raise InputError(
            f"train.devices: asked for {devices} devices, the {name} backend sees "
            f"{len(pool)} {kind}(s): {', '.join(pool) or 'none'}"
        )
    if devices == 1:
        return plan("default", pool[:1], "train.devices=1")
    if name == "torch":
        raise InputError(
            f"train.devices: {devices} devices are not supported with the torch backend; "
            "use KERAS_BACKEND=tensorflow or jax, or train.devices: 1"
        )
    if batch_size % devices:
        raise InputError(
            f"sampler.batch_size: {batch_size} does not split evenly over "
            f"train.devices={devices}; use a multiple of {devices}"
        )
    return plan(_parallel_strategy(name), pool[:devices], f"train.devices={devices}")


def _parallel_strategy(name: str) -> str:
    if name == "tensorflow":
        return "mirrored"
    if name == "jax":
        return "data_parallel"
    raise InputError(f"train.devices: several devices are not supported with the {name} backend")


@functools.cache
def _mirrored(devices: tuple[str, ...]):
    import tensorflow as tf

    return tf.distribute.MirroredStrategy([f"/{d.split(':')[0]}:{d.split(':')[1]}"
                                           for d in devices])


@functools.cache
def _data_parallel(devices: tuple[str, ...]):
    import keras

    return keras.distribution.DataParallel(devices=list(devices))


# --------------------------------------------------------------------------- precision


@contextlib.contextmanager
def precision(mixed_precision: str = "none"):
    """Sets the Keras global dtype policy for ``mixed_precision`` and restores it after.

    Layers take the global policy when they are built, so the model must be built (or
    loaded) inside; it keeps its policy afterwards. ``none`` sets ``float32``.

    >>> import keras
    >>> with precision("bfloat16"):
    ...     keras.config.dtype_policy().name
    'mixed_bfloat16'
    """
    import keras

    policy = MIXED_PRECISION[check_mixed_precision(mixed_precision)]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)


def environment_summary() -> str:
    """One line: backend, accelerators found, for logs and benchmarks."""
    info = describe()
    names = info.get("devices.accelerator_names", "")
    return (f"backend {info['devices.backend']} (keras {info['devices.keras_version']}), "
            f"accelerators: {info['devices.accelerators']}" + (f" ({names})" if names else "")
            + f", {info['devices.cpus']} CPU device(s)")


__all__ = [
    "DEVICE_WORDS",
    "MIXED_PRECISION",
    "DevicePlan",
    "backend",
    "check_devices",
    "check_mixed_precision",
    "describe",
    "device_names",
    "enable_memory_growth",
    "environment_summary",
    "list_devices",
    "plan_devices",
    "precision",
]
