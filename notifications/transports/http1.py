"""One keep-alive HTTP/1.1 connection to one origin, for the transports' POSTs.

A Web Push is a POST and a short answer (201, a ``Location``, no body). Through urllib3 that took
more of this process's CPU than encrypting the payload (bench/bench_delivery.py: its pool
manager, retry and timeout objects, header dictionaries, and ``http.client``'s header parse
through ``email.parser``), on the sender thread, which set the pace of a batch. Here a request
is one ``sendall`` of bytes written at once, and the answer is read line by line from the
socket: status line, headers, then the body by ``Content-Length``, chunked, or until the server
closes (RFC 9112 6.3). The connection is kept between requests unless the server says
``Connection: close`` (or answers HTTP/1.0 without keep-alive); before a request on a kept
connection, a readable socket means the server closed it while idle (as urllib3 checks it), and
a new connection is made. A request is never sent twice: a failure raises, the outbox retries.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

MAX_LINE = 65_536  # as http.client: a longer status or header line is not HTTP
MAX_HEADERS = 100
MAX_BODY = 1 << 20  # a push service's answer is a few bytes; more is read and dropped, not kept
# A request target or header value with a control character (a target: a space) or DEL would
# split the request (http.client refuses them too); an endpoint comes from a browser: checked.
TARGET = re.compile(r"/[\x21-\x7e]*")
BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 5.1)


class HttpError(Exception):
    """The server broke HTTP/1.1, or the connection failed: nothing is known of the request's fate."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case; a repeated one: the last
    body: bytes = b""


def check_target(target: str) -> None:
    """Raise ``ValueError`` if ``target`` (a path and query) could not go on a request line as is."""
    if not TARGET.fullmatch(target):
        raise ValueError(f"not a request target: {target!r}")


class KeepAlive:
    """One connection to ``origin`` (``http`` or ``https``, no proxy), reused request after request."""

    def __init__(self, origin: str, *, ca_certs: str | None = None, timeout: float = 10.0) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an HTTP origin: {origin!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.rsplit("@", 1)[-1].encode("idna")
        self.ca_certs = ca_certs
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.reader: BinaryIO | None = None
        self.connections = 0  # made so far (tests: one per batch)
        self.requests = 0

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            context = ssl.create_default_context(cafile=self.ca_certs or None)
            sock = context.wrap_socket(sock, server_hostname=self.host)
        self.sock, self.reader = sock, sock.makefile("rb")
        self.connections += 1

    def _dropped(self) -> bool:
        """Whether the kept connection was closed by the server (readable while idle: EOF or garbage)."""
        assert self.sock is not None
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))

    def close(self) -> None:
        for part in (self.reader, self.sock):
            if part is not None:
                with contextlib.suppress(OSError):
                    part.close()
        self.sock = self.reader = None

    def post(self, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """POST ``body`` to ``target`` with ``headers``; the answer, or ``HttpError``."""
        check_target(target)
        lines = [f"POST {target} HTTP/1.1\r\n".encode(), b"Host: ", self.host_header, b"\r\n"]
        for name, value in headers.items():
            if BAD_VALUE.search(value) or not TOKEN.fullmatch(name):
                raise ValueError(f"header {name!r} cannot be sent as is")
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(f"Content-Length: {len(body)}\r\n\r\n".encode())
        request = b"".join(lines) + body
        try:
            if self.sock is None or self._dropped():
                self.close()
                self._connect()
            assert self.sock is not None
            self.sock.sendall(request)
            self.requests += 1
            answer, keep = self._read_answer()
        except (OSError, ValueError, HttpError) as exc:
            self.close()
            raise HttpError(str(exc) or type(exc).__name__) from exc
        if not keep:
            self.close()
        return answer

    def _line(self) -> bytes:
        assert self.reader is not None
        line = self.reader.readline(MAX_LINE + 1)
        if not line:
            raise HttpError("the server closed the connection")
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            raise HttpError("line too long")
        return line

    def _read_answer(self) -> tuple[Answer, bool]:
        while True:
            version, _, rest = self._line().rstrip(b"\r\n").partition(b" ")
            code = rest[:3]
            if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
                raise HttpError(f"not an HTTP/1.x status line: {version + b' ' + rest!r}")
            headers = self._headers()
            status = int(code)
            if 100 <= status < 200:
                continue  # an interim answer (RFC 9110 15.2): the final one follows
            break
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (version == b"HTTP/1.1" or "keep-alive" in connection)
        if status in (204, 304):
            return Answer(status, headers), keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return Answer(status, headers, self._chunked()), keep
        if "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise HttpError(f"bad Content-Length: {length!r}")
            return Answer(status, headers, self._read(int(length))), keep
        return Answer(status, headers, self._until_close()), False

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return headers
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise HttpError(f"bad header line: {line!r}")
            headers[name.lower()] = value.strip()
        raise HttpError("too many headers")

    def _read(self, length: int) -> bytes:
        assert self.reader is not None
        data = self.reader.read(min(length, MAX_BODY))
        left = length - len(data)
        while left > 0:  # more than we keep: read it off the connection anyway
            chunk = self.reader.read(min(left, 65_536))
            if not chunk:
                break
            left -= len(chunk)
        if len(data) < min(length, MAX_BODY) or left > 0:
            raise HttpError("the server closed the connection in the body")
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        kept = 0
        while True:
            size = self._line().split(b";", 1)[0].strip()
            try:
                length = int(size, 16)
            except ValueError as exc:
                raise HttpError(f"bad chunk size: {size!r}") from exc
            if length == 0:
                self._headers()  # trailers, up to the empty line
                return b"".join(parts)
            data = self._read(length)
            if kept < MAX_BODY:
                parts.append(data)
                kept += len(data)
            if self._line() not in (b"\r\n", b"\n"):
                raise HttpError("a chunk does not end with CRLF")

    def _until_close(self) -> bytes:
        assert self.reader is not None
        data = self.reader.read(MAX_BODY)
        while self.reader.read(65_536):
            pass
        return data
