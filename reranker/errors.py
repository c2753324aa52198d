"""Small exception types whose messages name the key and the bad value.

The API maps them to HTTP status codes; the UI shows their message.
"""
from __future__ import annotations


class RerankerError(Exception):
    """Base class of every error this package raises on purpose."""

    status_code = 500


class InputError(RerankerError):
    """The caller sent something we refuse (HTTP 400/422)."""

    status_code = 422


class PayloadTooLarge(InputError):
    """An upload or media item is bigger than the configured limit (HTTP 413)."""

    status_code = 413


class MediaError(InputError):
    """An image or video could not be decoded, or breaks a media limit."""

    status_code = 422


class ForbiddenPath(InputError):
    """A media path points outside the allowed media folders."""

    status_code = 403


class NotFound(RerankerError):
    status_code = 404


class Conflict(RerankerError):
    """The operation clashes with the current state (e.g. an update already running)."""

    status_code = 409


class NotReady(RerankerError):
    """No model version can serve the request right now."""

    status_code = 503


class ModelLoadError(RerankerError):
    """A model directory could not be loaded or failed verification."""

    status_code = 422


class InsufficientMemory(ModelLoadError):
    """Not enough free memory to load a model (estimated before loading)."""


class StoreUnavailable(RerankerError):
    """The data directory cannot be written (disk full, read-only, file gone): nothing was changed."""

    status_code = 503
