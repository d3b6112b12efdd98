"""Typed errors and warnings. Every user-facing failure is one of these, with a one-line message naming the
problem."""


class ShowoError(Exception):
    """Base class: the CLI turns these into a one-line message and exit code 2."""


class CheckpointError(ShowoError):
    """A checkpoint is missing, incomplete, unsafe or does not match the model (names the keys)."""


class ConfigError(ShowoError):
    """A configuration value is missing or out of range."""


class InputError(ShowoError, ValueError):
    """A user input (image, mask, prompt, number, tensor) is invalid. Also a ValueError: the lower layers (prompt
    builders, samplers) raised plain ValueErrors for these before."""


class TrainingDiverged(ShowoError):
    """The loss or the gradients stopped being finite: training stops before the step is applied or saved."""

    def __init__(self, step: int, loss: float, grad_norm: float):
        super().__init__(f"training diverged at step {step} (loss {loss:.4g}, gradient norm {grad_norm:.4g}); "
                         "stopped before applying or saving it: lower the learning rate and start a new run directory")


class OutputError(ShowoError):
    """Results or a run directory could not be written (a path that is a file, not writable, a full disk...)."""


class NonFiniteScores(ShowoError):
    """The model's scores came out NaN or infinite, so nothing meaningful can be sampled or chosen."""

    def __init__(self):
        super().__init__("the model's scores are NaN or infinite, so nothing can be sampled: its weights may be "
                         "damaged (or overflow in this dtype: try --dtype float32)")


class OfflineError(CheckpointError):
    """A hub id was given but the hub cannot be reached and nothing is cached locally."""


class ShowoWarning(UserWarning):
    """Something was adjusted to make an input usable, or a choice will run poorly here (said once, in one line)."""
