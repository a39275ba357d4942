"""Exceptions raised by vist3a. The CLI maps each to one ``Error:`` line and an exit code."""

from __future__ import annotations


class Vist3aError(Exception):
    """Base class. ``exit_code`` 1 means a failure during a run."""

    exit_code = 1


class InputError(Vist3aError):
    """Bad input of any kind: flags, files, configs, checkpoints, registry entries (exit code 2)."""

    exit_code = 2


class ConfigError(InputError):
    """A configuration file or value failed validation."""


class RegistryError(InputError):
    """registry.yaml (or a user registry file) is malformed or inconsistent."""


class CheckpointError(InputError):
    """A checkpoint is missing, truncated, or does not match the model it is loaded into."""


class PluginError(InputError):
    """A plugin is broken: an unknown hook, an invalid registration or a duplicate name."""


class UnknownPluginError(InputError):
    """A generator, decoder, reward or plugin name that nothing provides."""


class NotInstalledError(InputError):
    """A registry entry whose plugin is not installed; the message says how to install it."""


class ShapeError(InputError, ValueError):
    """A tensor does not have the shape a function documents."""
