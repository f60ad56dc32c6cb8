"""A loopback SMTP server (aiosmtpd) that counts what it receives, by Message-ID.

It can be stopped and started again on the same port (an outage), refuse chosen recipients
with a 5xx (a bounce) and slow every message down (to kill a worker mid-batch).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The headers only, without the MIME structure: a multipart message's parse compiles a regular
# expression for its boundary, fresh in every message (the re module caches 512), which cost this
# server more per message than all the rest of the parse.
HEADERS = BytesHeaderParser(policy=compat32)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(self, smtp: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.lower() in self.server.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        if self.server.delay:
            time.sleep(self.server.delay)  # blocks the loop on purpose: a slow server
        head = envelope.content.split(b"\r\n\r\n", 1)[0]
        message = HEADERS.parsebytes(head)  # the headers only: a cheap, fast counter
        with self.server.lock:
            self.server.messages.append(
                {
                    "message_id": "".join(str(message["Message-ID"]).split()),  # unfold
                    "to": list(envelope.rcpt_tos),
                    "subject": str(message["Subject"]),
                    "key": message["X-Carnet-Key"],
                    "raw": envelope.content,
                }
            )
        return "250 Message accepted"


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.messages: list[dict[str, Any]] = []
        self.refuse: set[str] = set()
        self.delay = 0.0
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    def start(self) -> SmtpServer:
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(m["message_id"] for m in self.messages)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.ids().values() if n > 1)
