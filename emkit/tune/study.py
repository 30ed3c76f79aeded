"""Where Optuna studies live: one storage that outlives the process and is shared.

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
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from emkit.errors import InputError

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
    import warnings

    import optuna

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
    """
    import optuna

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


__all__ = ["DEFAULT_STORAGE", "open_storage", "open_study", "sqlite_lock", "storage_url"]
