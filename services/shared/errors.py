"""One exception tree for all of Clamor, rooted in :class:`ClamorError`.

The consumer loop chooses a message's outcome by error class: a :class:`TransientError` is
retried later (``nak`` with a delay), a :class:`PermanentError` is dead-lettered and terminated.
Any other exception is treated as transient, so a bug delays work but never loses it.
"""

from __future__ import annotations


class ClamorError(Exception):
    """Base of every error Clamor raises on purpose."""


class ConfigError(ClamorError):
    """The configuration is invalid; the message names the field and where it came from."""


class TransientError(ClamorError):
    """Worth retrying: the network, NATS or a downstream service failed for now.

    ``retry_after_s`` is the wait the failing party asked for (an HTTP ``Retry-After``, a paused
    destination), when it asked: the consumer loop never retries sooner than that.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(ClamorError):
    """Retrying cannot help: the message is malformed or violates a contract."""


class NatsServerError(ClamorError):
    """The local nats-server could not be found or started."""
