"""The scheduler's view of the trial workers, read from Redis (``workers.heartbeat``).

Workers never touch the database; what the scheduler needs to know of them lives in
Redis: which trials still beat, which attempts a worker took, which queues live workers
consume. The scheduler also writes one thing back: the attempts it reclaimed (retired),
which a worker handed their message later drops unrun.

Every read answers "unknown" (None) when Redis does not: the scheduler then falls back
to what it did before it could ask (count every attempt, warn of nothing).
"""

from __future__ import annotations

import logging

import redis

from service.storage.tables import TrialRow
from workers.heartbeat import HeartbeatStore, QueueConsumers

logger = logging.getLogger(__name__)

# How long a retired attempt stays marked: longer than any visibility timeout worth
# using (the workers' default is 12 h), after which the broker stops redelivering.
RETIRED_KEEP_S = 7 * 24 * 3600.0


class RedisFleet:
    """Heartbeats (called as the scheduler's ``HeartbeatSource``), started attempts,
    queue consumers, and retirement of reclaimed attempts."""

    def __init__(self, store: HeartbeatStore) -> None:
        self.store = store

    def __call__(self, trials: list[TrialRow]) -> dict[int, float]:
        beats = self.store.trials([(t.study_id, t.id) for t in trials])
        return {trial_id: beat.ts for (_, trial_id), beat in beats.items() if beat is not None}

    def consumers(self) -> dict[str, QueueConsumers] | None:
        try:
            return self.store.consumers()
        except redis.RedisError as exc:
            logger.warning("cannot read which queues workers consume: %s", exc)
            return None

    def started(self, task_ids: list[str]) -> set[str] | None:
        try:
            return self.store.attempts_started(task_ids)
        except redis.RedisError as exc:
            logger.warning("cannot read which attempts workers took: %s", exc)
            return None

    def retire(self, task_ids: list[str]) -> None:
        try:
            self.store.retire_attempts(task_ids, keep_s=RETIRED_KEEP_S)
        except redis.RedisError as exc:
            # The worker then runs a redelivered stale attempt; its result is ignored.
            logger.warning("cannot retire reclaimed attempts %s: %s", task_ids, exc)
