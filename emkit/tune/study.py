"""emkit's one Optuna module: where studies live, and the Optuna calls the tuners make.

Studies live in one storage that outlives the process and is shared.

The default is a SQLite file beside the MLflow store, ``sqlite:///mlruns/optuna.db``;
any Optuna RDB URL (``postgresql://...``, ``mysql://...``) works too, and is what
several machines share. Several ``emkit tune`` processes that name the same study and
storage all add trials to it: that is Optuna's own distributed mode, with no scheduler
of ours.

A process that dies in a trial leaves that trial RUNNING. The storage's heartbeat
notices (no beat for ``grace_period`` seconds), marks the trial FAILED, and
:class:`optuna.storages.RetryHeartbeatStaleTrialCallback` enqueues a copy with the same
parameters, so a killed study resumes where it stopped when any process next asks
for a trial.

The rest of emkit reaches Optuna only through this module: the trial states, samplers
(:class:`TrialSeededSampler`), pruners (:func:`make_pruner`), the retry bookkeeping of
killed trials, quiet logging and the study's plots (:func:`study_plots`).
"""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from emkit.errors import InputError
from emkit.io._common import atomic_path
from emkit.io.plain import to_plain

COMPLETE, PRUNED, RUNNING, WAITING = (TrialState.COMPLETE, TrialState.PRUNED,
                                      TrialState.RUNNING, TrialState.WAITING)
#: Raise it from an objective to prune the trial.
TrialPruned = optuna.TrialPruned
#: ``emkit tune recipe --pruner`` names.
PRUNERS = ("median", "hyperband", "none")

#: Used when neither the command line nor $EMKIT_OPTUNA_STORAGE names a storage.
DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
#: Seconds between a running trial's heartbeats, and silence after which it is stale.
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


@contextmanager
def sqlite_lock(url: str):
    """Holds an exclusive lock beside a ``sqlite:///`` store's file (no-op for other URLs).

    Optuna and MLflow create or migrate a new SQLite store's tables when they first open
    it, and two processes doing so at once break it (MLflow's migrations leave a
    half-made table). Locking serializes that for the processes of one machine; it
    guards both emkit's Optuna store and its MLflow store.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == "sqlite:///:memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = Path(url[len(prefix):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def storage_url(url: str | None = None) -> str:
    """``url``, else ``$EMKIT_OPTUNA_STORAGE``, else :data:`DEFAULT_STORAGE`."""
    import os

    return url or os.environ.get("EMKIT_OPTUNA_STORAGE") or DEFAULT_STORAGE


def open_storage(url: str | None = None, *, heartbeat: int | None = HEARTBEAT_SECONDS,
                 grace: int | None = GRACE_SECONDS, max_retry: int | None = 2):
    """An :class:`optuna.storages.RDBStorage` with heartbeats and retry of dead trials.

    Args:
        url: an Optuna RDB URL (see :func:`storage_url`). A ``sqlite:///`` file's folder
            is created. An in-memory SQLite store (``sqlite:///:memory:``) lives and dies
            with the process and gets no heartbeat.
        heartbeat: seconds between heartbeats of a running trial (None: no heartbeat,
            so a dead process's trial stays RUNNING).
        grace: seconds without a heartbeat after which a trial counts as dead.
        max_retry: how often a dead trial is retried with the same parameters.

    Raises:
        InputError: ``url`` is not a database URL Optuna can open.
    """
    url = storage_url(url)
    if url in ("sqlite://", "sqlite:///:memory:"):
        heartbeat = None  # one process, one connection: the heartbeat thread would see no tables
    elif url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = (optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
                     if heartbeat else None)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
                heartbeat_interval=heartbeat, grace_period=grace if heartbeat else None,
                heartbeat_stale_trial_callback=retry,
            )
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL
        raise InputError(
            f"study storage {url!r} cannot be opened ({type(exc).__name__}: {exc}); expected "
            "an Optuna RDB URL such as sqlite:///mlruns/optuna.db"
        ) from exc


def open_study(name: str, *, storage=None, direction: str | None = "minimize",
               directions=None, sampler=None, pruner=None):
    """Creates study ``name`` in ``storage``, or loads it if it exists (to resume or share).

    ``storage`` is a URL or an opened storage (:func:`open_storage`).

    Args:
        name: the study's name.
        storage: a storage URL (default :func:`storage_url`'s) or an opened storage.
        direction: ``"minimize"`` or ``"maximize"``, for one objective.
        directions: one direction per objective, for several (e.g. a Pareto study).
        sampler, pruner: Optuna's (default TPE, median).
    """
    if storage is None or isinstance(storage, str):
        url = storage_url(storage)
        with sqlite_lock(url):  # the first process creates the tables, the others wait
            return optuna.create_study(
                study_name=name, storage=open_storage(url), load_if_exists=True,
                sampler=sampler, pruner=pruner, direction=None if directions else direction,
                directions=directions,
            )
    return optuna.create_study(
        study_name=name, storage=storage, load_if_exists=True, sampler=sampler, pruner=pruner,
        direction=None if directions else direction, directions=directions,
    )


@contextmanager
def quiet():
    """Optuna logs warnings only, inside the block (not a line per trial)."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def log_warnings_only() -> None:
    """Optuna logs warnings only, from now on in this process."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def tpe_sampler(seed: int):
    """Optuna's TPE sampler with a seed."""
    return optuna.samplers.TPESampler(seed=seed)


def max_trials(n_trials: int, states=(COMPLETE,)):
    """A callback that stops ``study.optimize`` once the study has ``n_trials`` trials in
    ``states`` (counted over every process that shares it).

    Args:
        n_trials: the trials the study should have.
        states: which trial states count.
    """
    return optuna.study.MaxTrialsCallback(n_trials, states=states)


def claim_study(study, attrs: dict) -> None:
    """Marks a study with what it was made for, or refuses a caller that wants other things.

    Every process that works on a shared study calls this first, so that two searches of
    different setups never mix their trials under one name.

    Args:
        study: the study.
        attrs: user attributes (JSON-able) that every caller must share, e.g. the metric,
            the recipe, or a digest of the data.

    Raises:
        InputError: the study was made with another value of one of ``attrs``.
    """
    attrs = json.loads(json.dumps(to_plain(attrs)))
    existing = study.user_attrs
    for key, value in attrs.items():
        if key not in existing:
            study.set_user_attr(key, value)
        elif existing[key] != value:
            name = key.split(".", 1)[-1]
            raise InputError(
                f"study {study.study_name!r} was made for {name} {_short(existing[key])}; this "
                f"call has {_short(value)}: name a new study (--study NAME) for this setup"
            )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def optimize_with_bar(study, objective, *, n_trials: int, remaining: int, timeout=None,
                      progress: bool = True, show_best: bool = True) -> None:
    """Runs ``objective`` until the study holds ``n_trials`` complete trials, with a bar.

    Args:
        study: the study.
        objective: the function Optuna calls per trial.
        n_trials: complete trials the study should end with (other processes count).
        remaining: trials this call expects to run (the bar's length).
        timeout: seconds, or None.
        progress: show the progress bar (on stderr).
        show_best: show the best value so far (single-objective studies).
    """
    from tqdm import tqdm

    bar = tqdm(total=remaining, desc=study.study_name, unit="trial", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)

    def update(study, trial):
        """Advances the bar by one finished trial (an Optuna ``optimize`` callback).

        Args:
            study: the study.
            trial: the trial that finished (a ``FrozenTrial``).
        """
        if show_best and trial.state == COMPLETE:
            bar.set_postfix(best=f"{study.best_value:.4f}", refresh=False)
        bar.update(1)

    try:
        study.optimize(objective, n_trials=remaining, timeout=timeout,
                       callbacks=[max_trials(n_trials), update], gc_after_trial=False)
    finally:
        bar.close()


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """TPE whose random state is seeded by ``(seed, trial number)``.

    Processes that share a study with the same ``seed`` would otherwise draw the same
    points; this way trial n gets the same draw in whichever process runs it, and one
    process's search is reproducible. TPE keeps no other state between trials.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._samplers: dict[int, optuna.samplers.TPESampler] = {}

    def _for(self, trial) -> optuna.samplers.TPESampler:
        if trial.number not in self._samplers:
            state = int(np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0])
            self._samplers[trial.number] = optuna.samplers.TPESampler(seed=state)
        return self._samplers[trial.number]

    def infer_relative_search_space(self, study, trial):
        """The trial's TPE's relative search space (Optuna's ``BaseSampler`` hook).

        Args:
            study: the study.
            trial: the trial (a ``FrozenTrial``).

        Returns:
            ``{param name: distribution}``.
        """
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        """Values for the relative search space, from the trial's TPE.

        Args:
            study: the study.
            trial: the trial (a ``FrozenTrial``).
            search_space: from :meth:`infer_relative_search_space`.

        Returns:
            ``{param name: value}``.
        """
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        """A value for one parameter outside the relative space, from the trial's TPE.

        Args:
            study: the study.
            trial: the trial (a ``FrozenTrial``).
            param_name: the parameter's name.
            param_distribution: its Optuna distribution.
        """
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        """Passes Optuna's before-trial hook to the trial's TPE.

        Args:
            study: the study.
            trial: the trial starting (a ``FrozenTrial``).
        """
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        """Passes Optuna's after-trial hook to the trial's TPE, then forgets that TPE.

        Args:
            study: the study.
            trial: the trial that finished (a ``FrozenTrial``).
            state: its ``TrialState``.
            values: its objective values, or None (a failed or pruned trial).
        """
        self._for(trial).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)


def make_pruner(pruner, *, every: int, max_steps: int):
    """The Optuna pruner for ``"median"``, ``"hyperband"`` or ``"none"`` (or ``pruner``
    itself when it is already an Optuna pruner).

    Steps are optimizer steps, reported at each validation, ``every`` steps apart. The
    median pruner waits for 5 complete trials and never prunes at a trial's first
    validation, whose score says little; Hyperband's resource runs from one validation
    interval to ``max_steps``.

    Args:
        pruner: a name, or an Optuna pruner.
        every: validation period in steps (the pruner's resource unit).
        max_steps: a trial's step budget.
    """
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=every + 1)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min(every, max_steps),
                                              max_resource=max_steps)
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise InputError(f"pruner {pruner!r}: expected one of {', '.join(PRUNERS)}")


def retried_trial_number(trial) -> int | None:
    """The number of the killed trial that ``trial`` retries, or None for a new one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def requeue(study, trial, original: int) -> None:
    """Queues a retry of the interrupted ``trial`` (a retry of trial ``original``) as the
    storage's heartbeat would: same parameters, WAITING.

    Args:
        study: the study.
        trial: the interrupted trial, frozen.
        original: the number of the trial it first retried (itself, if none).
    """
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    study.add_trial(optuna.trial.create_trial(
        state=WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=trial.user_attrs,
        system_attrs={"failed_trial": original, "retry_history": history}))


def fail_stale_trials(study) -> None:
    """Marks the RUNNING trials whose heartbeat stopped as FAILED (and queues their retry)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


# --------------------------------------------------------------------------- plots


def study_plots(study, folder, *, target_name: str = "objective") -> tuple[list[Path], dict]:
    """Writes the study's plots into ``folder``.

    Args:
        study: an :class:`optuna.Study`.
        folder: where to write ``optimization_history.png``, ``param_importances.png``
            and, for a study with two objectives, ``pareto_front.png``.
        target_name: what the objective is called on the axes (e.g. ``"rand error"``);
            for two objectives, two names joined by ``","``.

    Returns:
        ``(paths written, {plot name: why it was not drawn})``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    finished = study.get_trials(deepcopy=False, states=(COMPLETE,))
    if not finished:
        return [], {"all": "the study has no finished trial yet"}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    multi = len(study.directions) > 1
    names = target_name.split(",") if multi else [target_name]
    plots = {}
    if multi:
        plots["pareto_front"] = lambda: ovm.plot_pareto_front(study, target_names=names)
        for i, name in enumerate(names):
            plots[f"optimization_history_{i}"] = lambda i=i, name=name: \
                ovm.plot_optimization_history(study, target=lambda t: t.values[i],
                                              target_name=name)
    else:
        plots["optimization_history"] = lambda: ovm.plot_optimization_history(
            study, target_name=names[0])
        plots["param_importances"] = lambda: ovm.plot_param_importances(
            study, target_name=names[0])
    written, skipped = [], {}
    if len(finished) < 2:
        plots.pop("param_importances", None)
        skipped["param_importances"] = "needs at least two finished trials"
    for name, draw in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)  # Matplotlib's empty-legend note
                axes = draw()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
            plt.close("all")
            continue
        fig = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        path = folder / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written, skipped


__all__ = ["COMPLETE", "DEFAULT_STORAGE", "PRUNED", "PRUNERS", "RUNNING", "WAITING",
           "TrialPruned", "TrialSeededSampler", "claim_study", "fail_stale_trials",
           "log_warnings_only", "make_pruner", "max_trials", "open_storage", "open_study",
           "optimize_with_bar", "quiet", "requeue",
           "retried_trial_number", "sqlite_lock", "storage_url", "study_plots", "tpe_sampler"]
