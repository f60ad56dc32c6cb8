"""``backend.broker``: a channel of a broker connection the worker already closed fails as a lost
connection (kombu issue #582), and the app uses that transport for every Redis broker URL.

No Redis here: opening a channel only pings the server, and that ping is answered by a stub; the
lost connection is the state kombu leaves behind when Redis went away mid-read (what
tests/e2e/test_delivery_reliability.py's Redis restart does to a real worker).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis
from kombu import Connection
from kombu.common import ignore_errors
from kombu.transport import redis as kombu_redis

from backend.broker import BrokerConnectionClosed, Transport

ROOT = Path(__file__).resolve().parents[2]


def delivered(channel: Any, tag: str) -> Any:
    """A task message as the channel hands it to the worker, not acknowledged yet (acks_late)."""
    raw = {
        "body": "{}",
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {},
        "properties": {"delivery_tag": tag, "delivery_info": {"exchange": "", "routing_key": "celery"}},
    }
    message = channel.Message(raw, channel=channel)
    channel.qos._delivered[tag] = message  # kombu's QoS.append without the Redis round trip
    return message


def redis_went_away(transport: type[kombu_redis.Transport]) -> tuple[Connection, Any]:
    """A worker's broker connection, collected as the consumer does when Redis goes away
    (celery/worker/consumer/consumer.py ``on_connection_error_after_connected``), and a task
    message in flight on its task channel.

    The channel was waiting on BRPOP; closing it reads that reply first, the read fails, and the
    close stops there: the channel stays attached to the transport while ``Connection.collect``
    goes on to drop the transport's ``client`` (kombu/connection.py ``_do_close_transport``).
    """
    with mock.patch.object(redis.Redis, "ping", return_value=True):
        connection = Connection("redis://127.0.0.1:1/0", transport=transport)
        channel: Any = connection.default_channel
    message = delivered(channel, "in-flight")
    channel._in_poll = True
    with mock.patch.object(channel, "_brpop_read", side_effect=redis.exceptions.ConnectionError("Redis went away")):
        connection.collect()
    del channel._in_poll  # kombu's _brpop_read clears it, whatever the read did
    assert channel.connection.client is None and not channel.closed
    return connection, message


@pytest.fixture
def lost() -> Iterator[tuple[Connection, Any]]:
    connection, message = redis_went_away(Transport)
    yield connection, message
    message.channel.qos._on_collect.cancel()  # no restore at interpreter exit: there is no Redis


def test_kombus_own_transport_stops_the_worker_here() -> None:
    """The consumer then closes the connection, ignoring connection errors; with kombu's transport
    the in-flight message's restore raises the AttributeError that escapes and stops the worker
    (``Unrecoverable error``): the state above is the bug's, ``backend.broker`` changes the outcome."""
    connection, message = redis_went_away(kombu_redis.Transport)
    with pytest.raises(AttributeError, match="hostname"):
        ignore_errors(connection, connection.close)
    message.channel.qos._on_collect.cancel()


def test_the_consumer_closes_the_lost_connection_and_goes_on(lost: tuple[Connection, Any]) -> None:
    connection, message = lost
    ignore_errors(connection, connection.close)  # consumer.py, before it reconnects
    assert message.channel.closed
    assert not message.acknowledged  # left in Redis's unacked set: it comes back (acks_late)


ACTIONS: dict[str, Callable[[Any], object]] = {
    # hub.close() runs the late ack of a task that finished meanwhile (ack_log_error → QoS.ack).
    "ack": lambda message: message.channel.basic_ack(message.delivery_tag),
    "requeue": lambda message: message.channel.basic_reject(message.delivery_tag, requeue=True),
}


@pytest.mark.parametrize("action", ACTIONS)
def test_a_channel_of_a_closed_connection_fails_as_a_lost_connection(lost: tuple[Connection, Any], action: str) -> None:
    connection, message = lost
    ignore_errors(connection, connection.close)
    with pytest.raises(BrokerConnectionClosed) as raised:
        ACTIONS[action](message)
    # What Celery catches to reconnect (consumer.start) and what ack_log_error logs.
    assert isinstance(raised.value, Transport.connection_errors)
    assert isinstance(raised.value, redis.exceptions.ConnectionError)


def test_the_late_ack_at_shutdown_is_logged_not_raised(
    lost: tuple[Connection, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """``hub.close()`` → ``Message.ack_log_error(logger, connection_errors)``: the worker's shutdown
    path from the e2e failure; the message stays unacknowledged, so Redis hands it out again."""
    connection, message = lost
    ignore_errors(connection, connection.close)
    logger = logging.getLogger("tests.broker")
    with caplog.at_level(logging.CRITICAL, logger="tests.broker"):
        message.ack_log_error(logger, Transport.connection_errors)
    assert "Couldn't ack 'in-flight'" in caplog.text
    assert "broker connection of this channel is closed" in caplog.text
    assert not message.acknowledged


def test_an_open_channel_still_builds_its_pool_from_the_connection() -> None:
    with mock.patch.object(redis.Redis, "ping", return_value=True):
        connection = Connection("redis://:secret@broker.example.org:6380/3", transport=Transport)
        channel: Any = connection.default_channel
    kwargs = channel.pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("broker.example.org", 6380, 3)
    assert kwargs["password"] == "secret"
    connection.release()


# --- The app's broker connections use it -------------------------------------------------------

TRANSPORT_PROBE = """
import json, django
django.setup()
from backend.celery import app
seen = {}
for name, connection in (("write", app.connection_for_write()), ("read", app.connection_for_read())):
    transport = type(connection.transport)
    seen[name] = f"{transport.__module__}:{transport.__qualname__}"
    seen["ssl"] = connection.ssl if connection.ssl is False else {k: int(v) for k, v in connection.ssl.items()}
print(json.dumps(seen))
"""


def transport_for(broker_url: str, tmp_path: Path) -> dict[str, Any]:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "CARNET_VAR_DIR": str(tmp_path),
        "CELERY_BROKER_URL": broker_url,
    }
    done = subprocess.run(
        [sys.executable, "-c", TRANSPORT_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("url", ["redis://queue.example.org:6380/2", "rediss://queue.example.org:6380/2"])
def test_redis_broker_urls_use_the_mended_transport(url: str, tmp_path: Path) -> None:
    seen = transport_for(url, tmp_path)
    assert seen["write"] == seen["read"] == "backend.broker:Transport"
    if url.startswith("rediss://"):
        assert seen["ssl"] == {"ssl_cert_reqs": 2}  # ssl.CERT_REQUIRED: TLS, the server verified
    else:
        assert seen["ssl"] is False


def test_the_serverless_broker_keeps_kombus_filesystem_transport(tmp_path: Path) -> None:
    seen = transport_for("filesystem://", tmp_path)
    assert seen["write"] == seen["read"] == "kombu.transport.filesystem:Transport"
