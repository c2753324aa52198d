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


class Overloaded(RerankerError):
    """The admission queue is full (HTTP 429 with Retry-After); the request was not started."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestCancelled(RerankerError):
    """The request's deadline passed (HTTP 504) or its client left (499, never seen by it)."""

    status_code = 504

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.unscored_pairs = 0  # pairs the engine dropped from its queue, never scored
        if reason != "deadline":
            self.status_code = 499


class ModelLoadError(RerankerError):
    """A model directory could not be loaded or failed verification."""

    status_code = 422


class InsufficientMemory(ModelLoadError):
    """Not enough free memory to load a model (estimated before loading)."""


class StoreUnavailable(RerankerError):
    """The data directory cannot be written (disk full, read-only, file gone): nothing was changed."""

    status_code = 503
