"""The exception types of dcnn.

Every error raised on bad input is a subclass of :class:`DcnnError` and carries a one-line
message that names the bad value and the fix. The ``dcnn`` command prints it as
``dcnn: error: <message>`` and exits with status 2.
"""

__all__ = ["DcnnError", "ConfigError", "LaunchError", "DataError", "TopologyError", "CommError",
           "CommTimeoutError", "CheckpointError", "DivergenceError", "DataWarning"]


class DcnnError(ValueError):
    """Base class of dcnn's input and runtime errors (one-line messages)."""


class ConfigError(DcnnError):
    """A configuration key, type or value is invalid."""


class LaunchError(ConfigError):
    """A method does not fit this launch: the number of ranks, or the model split over them
    (raised by the same check, with the same message, on every rank, before any traffic)."""


class DataError(DcnnError):
    """A dataset is missing, malformed or does not fit the task."""


class TopologyError(DcnnError):
    """A graph, graph sequence or weight matrix is invalid."""


class CommError(DcnnError):
    """The communication backend cannot serve the requested layout."""


class CommTimeoutError(CommError):
    """A rank waited longer than ``run.comm_timeout`` for a peer (failed or stuck)."""


class CheckpointError(DcnnError):
    """A checkpoint is missing, incomplete, tampered with or does not fit the run."""


class DivergenceError(DcnnError):
    """An iterate, tracker or the objective stopped being finite."""


class DataWarning(UserWarning):
    """Data that is usable but probably not what was meant (e.g. a constant feature column)."""
