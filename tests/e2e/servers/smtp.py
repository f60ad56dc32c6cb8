"""A loopback SMTP server (aiosmtpd) that counts what it receives, by Message-ID.

It can be stopped and started again on the same port (an outage), refuse chosen recipients
with a 5xx (a bounce) and slow every message down (to kill a worker mid-batch).

It advertises PIPELINING (RFC 2920), as production relays do (Postfix, Exim, the large
providers): aiosmtpd reads a group of commands in order from its buffer already, and here it
also writes their replies together, as RFC 2920 asks of a server (section 3.2: a reply may wait
while more commands are in the buffer, never while the server waits for input). Set
``pipelining = False`` before ``start`` for a server without it.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections import Counter
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The headers only, without the MIME structure: a multipart message's parse compiles a regular
# expression for its boundary, fresh in every message (the re module caches 512), which cost this
# server more per message than all the rest of the parse.
HEADERS = BytesHeaderParser(policy=compat32)


# ``<local@domain>`` of dot-atoms, then simple parameters: what ``email``'s address parser gives back
# unchanged (its parse of every MAIL and RCPT was a third of this server's CPU per message).
PLAIN_PATH = re.compile(
    r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>((?:[ \t]+[^\s()\"\\<>]+(?: [^\s()\"\\<>]+)*)?)"
)


class _SMTP(SMTP):
    """aiosmtpd's session; a plain address is taken without the ``email`` parser, with the same result
    (tests/notifications/test_loopback_servers.py compares both); any other goes through it."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = PLAIN_PATH.fullmatch(arg)
        if plain is None:
            return super()._getaddr(arg)
        address, rest = plain.group(1), plain.group(2).lstrip(" \t")
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest


class _PipeliningSMTP(_SMTP):
    """aiosmtpd's session, writing the replies of a pipelined group at once (RFC 2920 section 3.2).

    A reply is held while it is a continuation line (``250-``) or a ``250`` with another whole
    command line already received; every other reply (354, 221, any error) writes out what is
    held with it. Every command gets a reply, so nothing is held while this side waits for input.
    """

    held: bytes = b""

    async def push(self, status: Any) -> None:
        line = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") if isinstance(status, str) else status
        self.held += line + b"\r\n"
        # The reader's buffer (a private attribute of asyncio's StreamReader): a whole line in it is the
        # next pipelined command, answered before this server waits for input again.
        more = b"\n" in getattr(self._reader, "_buffer", b"")
        if line[3:4] == b"-" or (line.startswith(b"250 ") and more):
            return
        out, self.held = self.held, b""
        self._writer.write(out)
        await self._writer.drain()


class _Controller(Controller):
    def __init__(self, handler: _Handler, *, pipelining: bool, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.pipelining = pipelining

    def factory(self) -> SMTP:
        return (_PipeliningSMTP if self.pipelining else _SMTP)(self.handler, **self.SMTP_kwargs)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_EHLO(
        self, smtp: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does without this hook
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the last line, "250 HELP"
        return responses

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
        self.pipelining = True
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    def start(self) -> SmtpServer:
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.controller = _Controller(
            _Handler(self), pipelining=self.pipelining, hostname="127.0.0.1", port=self.port, ready_timeout=10
        )
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
