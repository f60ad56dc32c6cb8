"""The Redis broker transport: kombu's, with a channel that outlives its connection failing as a
connection error.

When Redis goes away, the consumer collects the lost connection, then closes it
(celery/worker/consumer/consumer.py ``on_connection_error_after_connected``). Collecting stops
closing the task channel at its failed BRPOP read and drops the transport's ``client``
(kombu/connection.py ``_do_close_transport``), so the channel stays attached to a transport
that no longer knows where Redis is. The close that follows closes that channel again: it puts
the running tasks' messages back (``restore_unacked``), which needs a new Redis connection pool,
and kombu builds its parameters from ``self.connection.client``:
``AttributeError: 'NoneType' object has no attribute 'hostname'`` (kombu issue #582, still so in
kombu 5.7.0). Celery only ignores the transport's ``connection_errors`` there, so the worker
exits (``Unrecoverable error``), and its shutdown fails again on the late acks of the tasks that
were running (``Message.ack_log_error`` from ``hub.close()``). It takes tasks running while a
BRPOP is pending, and the loss first seen by another reader (the remote-control one): now and
then under load (tests/e2e/test_delivery_reliability.py's Redis restart), every time in
tests/e2e/test_broker_restart.py.

Here that case raises redis's ``ConnectionError`` instead, which is in ``connection_errors``: the
close goes on, the consumer reconnects, and ``ack_log_error`` logs the acks it could not make.
Nothing is lost: tasks are ``acks_late``, so an unacknowledged message comes back, and the outbox
in PostgreSQL makes a second send a no-op.

Every ``redis://`` and ``rediss://`` broker URL uses this transport (``CELERY_BROKER_TRANSPORT`` in
``backend.settings``).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["BrokerConnectionClosed", "Channel", "Transport"]


class BrokerConnectionClosed(RedisConnectionError):
    """A channel was used after the broker connection it belongs to was closed."""


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """The Redis connection parameters, read from the kombu connection that owns this channel;
        a closed one has none (kombu issue #582): fail as a lost connection, not an AttributeError."""
        transport = self.connection  # None once the transport closed this channel
        if transport is None or transport.client is None:
            raise BrokerConnectionClosed("the broker connection of this channel is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]  # kombu-stubs omit _connparams
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
