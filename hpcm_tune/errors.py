"""The project's error type: everything a user can cause and fix derives from ``HpcmTuneError``.

``tune_main.main`` prints these as one line, ``error: <message>``, and exits with status 2;
any other exception is a bug and keeps its traceback. Their messages are complete: what is
wrong, with the value or path, and what to do.

Subclasses that replaced a built-in exception keep it as a second base (``InputError`` and
the checkpoint, data and resume errors are ``ValueError``s, ``WriteError`` is an
``OSError``, the sweep and divergence errors are ``RuntimeError``s), so library callers
that catch the built-in type keep working; the CLI tells them apart from bugs by
``HpcmTuneError`` alone.
"""

from __future__ import annotations


class HpcmTuneError(Exception):
    """Something the user can fix: bad input, an unusable file, a sweep that cannot run."""


class UsageError(HpcmTuneError):
    """A command-line argument is wrong or contradicts another (the message names the flag)."""


class InputError(HpcmTuneError, ValueError):
    """A setting, name or path given to the library is invalid (out of range, unknown, missing)."""


class WriteError(HpcmTuneError, OSError):
    """A file could not be written (disk full, quota, folder not writable); the message names
    the file, the reason and the free space, and any earlier version of it is unchanged."""
