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
