"""A tuning study's trials and Pareto front as CSV tables, for the run's artifacts."""

from __future__ import annotations

import csv
import io
import math

from emkit.tune.postprocess import DEFAULT_ATTR, TuneResult, options_override


def trials_csv(study, metric: str) -> str:
    """Every trial as CSV: number, state, values, the metric, split, merge, threshold, params.

    Args:
        study: the study.
        metric: the metric column's name.
    """
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params} - {"threshold"})  # its own column
    values = ["rand_split_value", "rand_merge_value"] if len(study.directions) > 1 else ["value"]
    header = ["number", "state", *values, metric, "rand_split", "rand_merge", "threshold",
              "default", "duration_s", *names]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for t in trials:
        a = t.user_attrs
        duration = t.duration.total_seconds() if t.duration is not None else ""
        writer.writerow([
            t.number, t.state.name, *(_cell(v) for v in (t.values or [""] * len(values))),
            *(_cell(a.get(k, "")) for k in (metric, "rand_split", "rand_merge", "threshold")),
            int(bool(a.get(DEFAULT_ATTR))), _cell(duration), *(_cell(t.params.get(k, "")) for k in names),
        ])
    return out.getvalue()


def pareto_csv(result: TuneResult) -> str:
    """The Pareto front as CSV, one operating point a row, with its ``--set`` override."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", "rand_split", "rand_merge", result.metric, "override"])
    for row in result.pareto_front:
        writer.writerow([row["trial"], _cell(row["rand_split"]), _cell(row["rand_merge"]),
                         _cell(row[result.metric]), options_override(row["options"])])
    return out.getvalue()


def _cell(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


__all__ = ["pareto_csv", "trials_csv"]
