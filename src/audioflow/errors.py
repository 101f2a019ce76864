"""The error hierarchy: every failure a user can cause is an :class:`AudioflowError`.

Messages name the file (when there is one) and what was wrong with it, so a batch job can log
one line per bad file and go on. Subclasses also derive from the matching builtin
(``FileNotFoundError``, ``PermissionError``, ``ValueError``, ``ImportError``) so code written
against the builtins keeps working.
"""

from __future__ import annotations

import re

__all__ = [
    "AudioFileNotFoundError",
    "AudioPermissionError",
    "AudioTooLargeError",
    "AudioflowError",
    "DecodeError",
    "EncodeError",
    "InvalidAudioError",
    "MissingDependencyError",
    "ParameterError",
    "SourceError",
    "StoreError",
    "UnsupportedFormatError",
]


class AudioflowError(Exception):
    """Base class of every error audioflow raises on purpose.

    Args:
        message: what was wrong, in a phrase ("truncated: header declares 480000 frames, ...").
        path: the file, URL or source description the problem is about, if any.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        message = _OBJECT_REPR.sub(r"<\1>", message)  # heap addresses say nothing to a user, much to an attacker
        self.message = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)

    def __reduce__(self):  # keep the (message, path) pair across process boundaries
        return (type(self), (self.message, self.path))


_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


class SourceError(AudioflowError):
    """The bytes could not be reached: missing path, directory, permissions, remote failure."""


class AudioFileNotFoundError(SourceError, FileNotFoundError):
    """The path or URL does not exist."""


class AudioPermissionError(SourceError, PermissionError):
    """The file exists but may not be read."""


class DecodeError(AudioflowError, ValueError):
    """The bytes are not valid audio: truncated, corrupt, or an impossible header."""


class UnsupportedFormatError(DecodeError):
    """The bytes are not in a format or codec audioflow can read (or write)."""


class InvalidAudioError(DecodeError):
    """The file decodes, but its samples are unusable (NaN or infinite values)."""


class AudioTooLargeError(DecodeError):
    """Decoding would need more memory than the configured limit (``AUDIOFLOW_MAX_DECODE_BYTES``)."""


class EncodeError(AudioflowError):
    """Writing audio failed (unsupported format/subtype combination, backend error)."""


class StoreError(AudioflowError):
    """A packed dataset is missing, incomplete, corrupt, or from a newer format version."""


class ParameterError(AudioflowError, ValueError):
    """An argument is out of range or of the wrong kind."""


class MissingDependencyError(AudioflowError, ImportError):
    """An optional dependency is missing; the message names the extra that provides it."""
