"""Transports by channel name: one module each, behind ``base.Transport``."""

from __future__ import annotations

from .apns import ApnsTransport
from .base import Envelope, Outcome, Transport, TransportError
from .email import EmailTransport
from .fcm import FcmTransport
from .webpush import WebPushTransport

TRANSPORTS: dict[str, type[Transport]] = {
    "email": EmailTransport,
    "webpush": WebPushTransport,
    "fcm": FcmTransport,
    "apns": ApnsTransport,
}


def transport_for(channel: str) -> Transport:
    """A fresh transport for ``channel`` (one per batch: it may hold a connection)."""
    return TRANSPORTS[channel]()


__all__ = ["TRANSPORTS", "Envelope", "Outcome", "Transport", "TransportError", "transport_for"]
