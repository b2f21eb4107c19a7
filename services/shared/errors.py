"""One exception tree for all of Clamor, rooted in :class:`ClamorError`.

The consumer loop chooses a message's outcome by error class: a :class:`TransientError` is
retried later (``nak`` with a delay), a :class:`PermanentError` is dead-lettered and terminated.
Any other exception is treated as transient, so a bug delays work but never loses it.

Every adapter translates the exceptions of the library it wraps (httpx, nats, grpc, aiosmtplib,
json) into this tree where it calls the library, with :func:`map_exceptions` or an ``except``
clause of its own, so callers above an adapter catch Clamor's classes only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager


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


# A library's exception class → the Clamor class that stands for it at this boundary.
ExceptionMapping = Mapping[type[BaseException], Callable[[str], ClamorError]]


@contextmanager
def map_exceptions(mapping: ExceptionMapping, what: str) -> Iterator[None]:
    """Translate a library's exceptions into the tree where an adapter calls it (httpx's ``map_exceptions``).

    The most specific class in ``mapping`` wins, so ``{OSError: TransientError, FileNotFoundError:
    ConfigError}`` reads a missing file as a configuration error and any other OS error as transient.
    The new error says ``what`` failed and why, and chains the original (``raise … from``). Errors
    already in the tree pass through unchanged, and so does anything the mapping does not name: an
    unknown error is a bug to see, not to dress up.
    """
    try:
        yield
    except ClamorError:
        raise
    except Exception as exc:
        target = next((mapping[cls] for cls in type(exc).__mro__ if cls in mapping), None)
        if target is None:
            raise
        raise target(f"{what}: {str(exc) or type(exc).__name__}") from exc
