"""Pictures of a study, written as PNG files for MLflow: how the objective improved,
which parameters mattered, and (for a split-versus-merge study) the Pareto front.

Optuna's Matplotlib plots, saved with the Agg backend. A plot that a study cannot have
yet (importances need two finished trials with parameters that vary) is left out,
and the reason is returned, never silently dropped.
"""

from __future__ import annotations

from pathlib import Path


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
    import warnings

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not finished:
        return [], {"all": "the study has no finished trial yet"}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    multi = len(study.directions) > 1
    names = target_name.split(",") if multi else [target_name]
    plots, written, skipped = {}, [], {}
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
        tmp = path.with_name(f".tmp-{path.name}")
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
        tmp.replace(path)
        plt.close(fig)
        written.append(path)
    return written, skipped


__all__ = ["study_plots"]
