"""DRF's anonymous and per-user throttles, with the request history stored packed.

DRF's ``SimpleRateThrottle`` keeps, per client, the list of its request times in the last
``duration`` and writes that whole list to the cache on every request it allows: a pickled list
of floats, so a client's every request costs time in proportion to the requests it made in the
window (about 70 µs at 500 requests in it, 150 µs at 1,000; a throttle at ``1200/min`` lets one
user keep 1,200). Here the same times are kept as packed doubles (``array('d')``, oldest first):
reading and writing them is one copy of bytes, about 5 µs whatever the length.

Everything else is DRF's: the scopes and rates (``DEFAULT_THROTTLE_RATES``), the cache keys' idents
(the user's pk, else the client's address), the timer, the sliding window (a request is allowed
while fewer than ``num_requests`` allowed requests are younger than ``duration``; the oldest are
dropped while they are at least ``duration`` old, as DRF does), the cache timeout, ``wait()`` (so
``Retry-After``) and the 429 problem document, which the views' exception handler renders as
before. The cache keys have their own prefix, ``throttle_packed_``: a list written by DRF's class
and the bytes written by this one never meet (a rolling deploy counts a client twice for one
window at most).
"""

from __future__ import annotations

from array import array
from typing import Any

from rest_framework import throttling


class PackedHistory(throttling.SimpleRateThrottle):
    """``SimpleRateThrottle`` with its history in the cache as packed doubles, oldest first."""

    cache_format = "throttle_packed_%(scope)s_%(ident)s"
    num_requests: int  # set by DRF's __init__ from the rate
    duration: int
    times: array[float]

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        times = array("d")
        packed = self.cache.get(self.key)
        if packed:
            times.frombytes(packed)
        self.now = self.timer()
        # Drop the oldest while they are out of the window, as DRF pops from its list's old end.
        cutoff = self.now - self.duration
        start = 0
        while start < len(times) and times[start] <= cutoff:
            start += 1
        self.times = times[start:] if start else times
        if len(self.times) >= self.num_requests:
            return self.throttle_failure()
        return self.throttle_success()

    def throttle_success(self) -> bool:
        self.times.append(self.now)
        self.cache.set(self.key, self.times.tobytes(), self.duration)
        return True

    def wait(self) -> float | None:
        """DRF's recommended wait: the window left of the oldest request kept, shared by the
        requests still available."""
        times = self.times
        remaining_duration = self.duration - (self.now - times[0]) if times else self.duration
        available_requests = self.num_requests - len(times) + 1
        if available_requests <= 0:
            return None
        return remaining_duration / float(available_requests)


class AnonRateThrottle(PackedHistory, throttling.AnonRateThrottle):
    """DRF's ``AnonRateThrottle`` (scope ``anon``, by client address), history packed."""


class UserRateThrottle(PackedHistory, throttling.UserRateThrottle):
    """DRF's ``UserRateThrottle`` (scope ``user``, by user, else client address), history packed."""
