"""The engine's expected failures.

Each is mapped by the CLI to one clear line on stderr and its own exit code; anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every expected failure. `exit_code` is what the CLI returns."""

    exit_code = 1


class ConfigError(EngineError):
    """The configuration file or a CLI flag is invalid."""

    exit_code = 2


class DataUnavailable(EngineError):
    """Market data is missing, stale or suspect where the run cannot safely do without it."""

    exit_code = 3


class StateCorrupt(EngineError):
    """A state file cannot be read or fails validation. It is never overwritten."""

    exit_code = 4


class LLMAnswerInvalid(EngineError):
    """The model's answer could not be turned into a decision."""

    exit_code = 5


class BudgetExceeded(EngineError):
    """A configured spending limit has been reached."""

    exit_code = 6


class LLMUnusable(EngineError):
    """The model cannot be used as configured, and retrying will not change that: a bad key,
    a model the server does not serve or has shut down, a Responses-only model, a parameter
    still rejected after negotiation, a prompt that does not fit its context. The run fails
    loudly (the scheduled workflow opens its failure issue) instead of holding every day."""

    exit_code = 7


# --- the state folder as a shared resource (engine/state.py) ----------------------


class StateLocked(EngineError):
    """Another run holds the state folder's lock: one writer at a time."""

    exit_code = 9


class StateUnwritable(EngineError):
    """The state folder cannot be written: not a directory, read-only, disk full, file too
    large. Nothing was committed; the state is as it was before the run."""

    exit_code = 8
