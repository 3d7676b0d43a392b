"""How long the engine's ``ask()`` takes, as seen by every process that asks.

Proposals are asked by the control workers (and by the API in ``inline`` mode), each in
its own process, while ``/metrics`` is served by the API. Each ask therefore adds to
cumulative bucket counters in one Redis hash, and the API reads them back at scrape time:
one histogram over all replicas without Prometheus' multiprocess mode. Recording is
best-effort: a Redis hiccup loses a sample, never a dispatch.
"""

from __future__ import annotations

import logging
from typing import cast

import redis

logger = logging.getLogger(__name__)

ASK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class AskLatencyLog:
    """Cumulative ask-latency buckets, a count and a sum in the hash ``{prefix}:ask_latency``."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}:ask_latency"

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> AskLatencyLog:
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, prefix=prefix)

    def record(self, seconds: float) -> None:
        pipe = self.client.pipeline(transaction=False)
        for le in ASK_BUCKETS_S:
            if seconds <= le:
                pipe.hincrby(self.key, f"le:{le}", 1)
        pipe.hincrby(self.key, "count", 1)
        pipe.hincrbyfloat(self.key, "sum", seconds)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            logger.warning("ask latency not recorded: %s", exc)

    def read(self) -> tuple[list[tuple[float, int]], int, float]:
        """``([(le, cumulative count), ...], count, sum)``; zeros when nothing was recorded."""
        # a client without decode_responses: keys and values are bytes
        stored = cast(dict[bytes, bytes], self.client.hgetall(self.key))
        raw = {k.decode(): v.decode() for k, v in stored.items()}
        buckets = [(le, int(raw.get(f"le:{le}", 0))) for le in ASK_BUCKETS_S]
        return buckets, int(raw.get("count", 0)), float(raw.get("sum", 0.0))
