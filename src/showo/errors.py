"""Typed errors. Every user-facing failure is one of these, with a one-line message naming the problem."""


class ShowoError(Exception):
    """Base class: the CLI turns these into a one-line message and exit code 2."""


class CheckpointError(ShowoError):
    """A checkpoint is missing, incomplete, unsafe or does not match the model (names the keys)."""


class ConfigError(ShowoError):
    """A configuration value is missing or out of range."""


class InputError(ShowoError):
    """A user input (image, mask, prompt, number) is invalid."""


class OfflineError(CheckpointError):
    """A hub id was given but the hub cannot be reached and nothing is cached locally."""
