"""The transport interface: ``send(message) -> provider id``, or ``TransportError``.

A transport knows one channel. It never touches the database: the sweep turns a
``TransportError`` into a retry (transient) or into a deactivated device or address and no
retry (``permanent=True``: 410 Gone, an unregistered token, a bounced address).
"""

from __future__ import annotations

import _thread
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar


class TransportError(Exception):
    """A failed send. ``permanent`` means the destination is gone: do not retry, deactivate it."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a transport sends: neutral texts (no drug, dose or diagnosis) and the row's key."""

    key: str
    channel: str
    to: str  # an email address, a Web Push endpoint, an FCM or APNs token
    language: str
    subject: str = ""
    text: str = ""
    html: str = ""
    push_title: str = ""
    push_body: str = ""
    url: str = ""
    data: dict[str, str] = field(default_factory=dict)
    p256dh: str = ""
    auth: str = ""

    @property
    def collapse_id(self) -> str:
        """The row key as the provider's collapse / topic id (32 characters fit every channel)."""
        return self.key[:32]


class Transport:
    """One channel. ``open``/``close`` bracket a batch so a connection can be reused."""

    channel: ClassVar[str] = ""
    # Whether a message's outcome may wait for the next message (``prepare_chained``).
    chains: ClassVar[bool] = False

    def open(self) -> None:
        """Prepare for a batch (connect, fetch a token); the default does nothing."""

    def close(self) -> None:
        """Release what ``open`` took; the default does nothing."""

    def send(self, message: Envelope) -> str:
        raise NotImplementedError

    def prepare(self, message: Envelope) -> Callable[[], str]:
        """``message`` made ready to go, as a call that sends it: ``send(message)`` in two halves.

        Delivery prepares message n+1 on its own thread while a sender thread has message n on
        the wire, so a transport puts its CPU work here (MIME bytes, encryption) and leaves the
        call mostly waiting on a socket; the call may run on another thread than this. A message
        that can never go may raise ``TransportError`` here already. The default defers it all.
        """
        return functools.partial(self.send, message)

    def prepare_chained(self, message: Envelope) -> Callable[[Outcome], None]:
        """``prepare``, for a transport whose server answers one message with the next (``chains``).

        The call runs on the sender thread with the message's future and settles it (the provider
        id, or ``TransportError``) there or in a later call: each call settles every earlier
        message, and ``flush`` settles the last. So an SMTP session can send the end of message n
        and the envelope of n+1 in one write (RFC 2920). The default settles each message in its call.
        """
        return functools.partial(_settle, self.prepare(message))

    def flush(self) -> None:
        """Settle the messages handed to ``prepare_chained`` calls that are still open; the default has none."""


class Outcome:
    """What became of one message, settled once (from any thread): its provider id, or an exception.

    ``concurrent.futures.Future``'s methods without its condition variable: a lock held until it
    is settled (two Futures and an executor work item per message cost ~25 µs of CPU, this ~5).
    """

    __slots__ = ("_error", "_lock", "_settled", "_value")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._settled = False
        self._value = ""
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._settled

    def set_result(self, value: str) -> None:
        self._value, self._settled = value, True
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        self._error, self._settled = error, True
        self._lock.release()

    def _wait(self, timeout: float | None) -> None:
        if not self._settled:
            if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
                raise TimeoutError
            self._lock.release()

    def result(self, timeout: float | None = None) -> str:
        """The provider id once settled (raising its exception instead, if any)."""
        self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return self._error


def _settle(send: Callable[[], str], outcome: Outcome) -> None:
    try:
        outcome.set_result(send())
    except BaseException as exc:
        outcome.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
