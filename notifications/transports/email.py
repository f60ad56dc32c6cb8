"""Email through Django's SMTP backend: HTML and text, the row key as ``Message-ID``."""

from __future__ import annotations

import contextlib
import smtplib
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from .base import Envelope, Transport, TransportError


class EmailTransport(Transport):
    channel = "email"

    def __init__(self) -> None:
        self.connection: Any = None

    def open(self) -> None:
        """One SMTP session for the whole batch; if the server is down, each send says so."""
        self.connection = get_connection(fail_silently=False)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self.connection.open()

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):  # a broken connection needs no clean close
                self.connection.close()
            self.connection = None

    def _reset(self) -> None:
        """Forget a connection that failed, so the next message reconnects."""
        self.close()
        self.open()

    def send(self, message: Envelope) -> str:
        if self.connection is None:
            self.open()
        domain = getattr(settings, "NOTIFY_MESSAGE_ID_DOMAIN", "carnet.localhost")
        message_id = f"<{message.key}@{domain}>"
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            connection=self.connection,
            headers={"Message-ID": message_id, "X-Carnet-Key": message.key, "Auto-Submitted": "auto-generated"},
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        try:
            sent = email.send()
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _msg in exc.recipients.values()]
            self._reset()
            if codes and all(500 <= int(code) < 600 for code in codes):
                raise TransportError(f"address refused: {codes}", permanent=True) from exc
            raise TransportError(f"address deferred: {codes}") from exc
        except smtplib.SMTPResponseException as exc:
            self._reset()
            raise TransportError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._reset()
            raise TransportError(f"SMTP unavailable: {exc}") from exc
        if sent != 1:
            raise TransportError("SMTP backend accepted nothing")
        return message_id
