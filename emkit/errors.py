"""Errors that emkit reports to a user as one clear line.

Every error raised on bad input names the input (file, key, shape or option),
what was received and what is allowed. The CLI prints ``emkit: error: <message>``
and exits with status 2; library callers can catch :class:`EmkitError`.
"""


class EmkitError(Exception):
    """Base class for errors caused by the user's input or environment."""


class InputError(EmkitError, ValueError):
    """An input (array, file content, option) has the wrong shape, type or value."""


class MissingDataError(EmkitError, FileNotFoundError):
    """A file, dataset key or data set is not where it was expected."""


class OverwriteError(EmkitError, FileExistsError):
    """An output exists and overwriting it was not asked for."""


def yaml_problem(exc) -> str:
    """A PyYAML error as one line: ``line L, column C: <problem>`` (no file excerpt).

    >>> import yaml
    >>> try:
    ...     yaml.safe_load("a: [1, 2")
    ... except yaml.YAMLError as exc:
    ...     print(yaml_problem(exc))
    line 1, column 9: expected ',' or ']', but got '<stream end>'
    """
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return " ".join(str(problem).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {' '.join(str(problem).split())}"
