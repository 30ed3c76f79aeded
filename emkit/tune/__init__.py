"""Optuna tuning: postprocessing parameters on validation predictions, and searches over
whole recipes whose trials are tracked as nested MLflow runs.

* :mod:`emkit.tune.study`: where studies live (SQLite under ``mlruns/`` or any RDB URL).
* :mod:`emkit.tune.postprocess`: ``emkit tune watershed``.
* :mod:`emkit.recipes.search`: ``emkit tune recipe``.
"""
