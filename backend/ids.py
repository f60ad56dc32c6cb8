"""Time-ordered public ids (UUID version 7, RFC 9562) for rows created in bulk.

A random UUID (version 4) as a unique column puts each new row's index entry on a random leaf
page of the index. The nightly pass creates plan items and escalations for patients spread over
the whole table, and at a million patients the public-id index of the plan items (862 MB) is
not in memory with the rest of a 46 GB database: each new item then waited for a leaf page from
disk (18 items, the next day's batch of 500 patients: 7.6–27 ms with version 4, 3.3 ms with
version 7; ``docs/benchmarks.md``, re-planning item 20). A version 7 id starts with its creation
time in milliseconds, so new entries go to the index's last pages, which stay in memory.

The rest of each id is 74 random bits: ids stay unguessable (as ``public_id`` must be in URLs)
though they tell when the row was created, which the rows' readers see anyway.
"""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["uuid7"]


def uuid7() -> uuid.UUID:
    """A new UUID version 7: 48 bits of Unix time in ms, the version, 74 random bits, the variant."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 used
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)
