"""Heartbeats in Redis: which workers are alive, what each runs, when each trial last moved.

Writer side: a ``HeartbeatPublisher`` per worker process, a daemon thread that rewrites
the process's entry every ``interval_s`` seconds, so a slow trial (still beating) can be
told from a dead one (silent past ``ttl_s``). Reader side: ``HeartbeatStore.workers()``
and ``HeartbeatStore.trial()``, used by the service; this module imports neither torch
nor Celery.

Keys (``prefix`` defaults to "scaletune"):
- ``{prefix}:workers``: hash, worker name -> JSON ``{worker, device, pid, ts, trial,
  queues, ...}`` (``queues``: the broker queues the worker consumes); an entry older than
  ``ttl_s`` is a worker that is gone (``prune`` deletes old ones);
- ``{prefix}:trial:{study_id}:{trial_id}``: JSON of the running attempt's last beat and
  progress, expiring ``ttl_s`` after the last beat: no key means no live runner;
- ``{prefix}:deliveries:{task_id}``: how often one attempt was delivered (worker lost);
- ``{prefix}:started:{task_id}``: a worker took this attempt (``claim_attempt``): the
  service burns an attempt only for a trial that some worker started;
- ``{prefix}:retired:{task_id}``: the service gave up on this attempt (reclaimed it): a
  worker handed its message later (redelivered after the visibility timeout) drops it.

Timestamps are ``time.time()`` of the writer; ages assume clocks synchronised by NTP.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialRef:
    """Which attempt of which trial a worker is running."""

    study_id: int
    trial_id: int
    attempt: int = 0
    task_id: str | None = None


@dataclass(frozen=True)
class WorkerBeat:
    """A worker's last heartbeat as seen by a reader; ``age_s`` is seconds since it."""

    worker: str
    device: str
    pid: int
    ts: float
    age_s: float
    trial: TrialRef | None
    trial_started_at: float | None
    queues: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueueConsumers:
    """Online worker processes consuming one queue, and how many of them run nothing."""

    live: int
    idle: int


@dataclass(frozen=True)
class TrialBeat:
    """A running trial's last heartbeat and progress (``step``/``loss`` of the last report)."""

    trial: TrialRef
    worker: str
    ts: float
    age_s: float
    started_at: float
    step: int | None
    loss: float | None


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class HeartbeatStore:
    """Reads and writes heartbeat keys in one Redis database."""

    def __init__(self, client: redis.Redis, *, prefix: str = "scaletune", ttl_s: float = 30.0):
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "scaletune", ttl_s: float = 30.0):
        client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        return cls(client, prefix=prefix, ttl_s=ttl_s)

    @property
    def workers_key(self) -> str:
        return f"{self.prefix}:workers"

    def trial_key(self, study_id: int, trial_id: int) -> str:
        return f"{self.prefix}:trial:{study_id}:{trial_id}"

    # -- writer side ---------------------------------------------------------------

    def write(
        self,
        *,
        worker: str,
        device: str,
        trial: TrialRef | None,
        started_at: float | None,
        progress: dict[str, Any] | None = None,
        ended: TrialRef | None = None,
        queues: tuple[str, ...] = (),
    ) -> None:
        """One heartbeat: the worker's entry and, while it runs one, its trial's key;
        ``ended``'s trial key is deleted in the same round trip."""
        now = time.time()
        entry = {
            "worker": worker,
            "device": device,
            "pid": os.getpid(),
            "ts": now,
            "trial": None if trial is None else asdict(trial),
            "trial_started_at": started_at,
            "queues": list(queues),
        }
        pipe = self.client.pipeline(transaction=False)
        if ended is not None:
            pipe.delete(self.trial_key(ended.study_id, ended.trial_id))
        pipe.hset(self.workers_key, worker, json.dumps(entry))
        if trial is not None:
            beat = {
                "trial": asdict(trial),
                "worker": worker,
                "ts": now,
                "started_at": started_at,
                **(progress or {}),
            }
            ttl_ms = max(1, int(self.ttl_s * 1000))
            pipe.set(self.trial_key(trial.study_id, trial.trial_id), json.dumps(beat), px=ttl_ms)
        pipe.execute()

    def remove_worker(self, worker: str) -> None:
        self.client.hdel(self.workers_key, worker)

    def count_delivery(self, task_id: str, *, keep_s: float) -> int:
        """Count one more delivery of ``task_id``; returns the count including this one."""
        key = f"{self.prefix}:deliveries:{task_id}"
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, max(1, int(keep_s)))
        count, _ = pipe.execute()
        return int(count)

    def claim_attempt(self, task_id: str, *, keep_s: float) -> bool:
        """Mark ``task_id`` started; False when the service has retired it (do not run it)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self._retired_key(task_id))
        pipe.set(self._started_key(task_id), 1, ex=max(1, int(keep_s)))
        retired, _ = pipe.execute()
        return not retired

    def retire_attempts(self, task_ids: list[str], *, keep_s: float) -> None:
        """Mark attempts the service reclaimed, so no worker runs them later."""
        if not task_ids:
            return
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.set(self._retired_key(task_id), 1, ex=max(1, int(keep_s)))
        pipe.execute()

    def attempts_started(self, task_ids: list[str]) -> set[str]:
        """Those of ``task_ids`` that a worker has taken (``claim_attempt``)."""
        if not task_ids:
            return set()
        found = self.client.mget([self._started_key(t) for t in task_ids])
        return {task_id for task_id, raw in zip(task_ids, found, strict=True) if raw is not None}

    def _started_key(self, task_id: str) -> str:
        return f"{self.prefix}:started:{task_id}"

    def _retired_key(self, task_id: str) -> str:
        return f"{self.prefix}:retired:{task_id}"

    # -- reader side ---------------------------------------------------------------

    def workers(self, *, online_only: bool = True) -> list[WorkerBeat]:
        """Workers by name; ``online_only`` drops those silent for more than ``ttl_s``."""
        now = time.time()
        beats = [_worker_beat(json.loads(raw), now) for raw in self.client.hvals(self.workers_key)]
        if online_only:
            beats = [b for b in beats if b.age_s <= self.ttl_s]
        return sorted(beats, key=lambda b: b.worker)

    def consumers(self) -> dict[str, QueueConsumers]:
        """Per broker queue, the online worker processes that consume it."""
        counts: dict[str, QueueConsumers] = {}
        for beat in self.workers():
            for queue in beat.queues:
                seen = counts.get(queue, QueueConsumers(live=0, idle=0))
                counts[queue] = QueueConsumers(
                    live=seen.live + 1, idle=seen.idle + (beat.trial is None)
                )
        return counts

    def trial(self, study_id: int, trial_id: int) -> TrialBeat | None:
        """The trial's last heartbeat, or None when no live worker runs it."""
        raw = self.client.get(self.trial_key(study_id, trial_id))
        return None if raw is None else _trial_beat(json.loads(raw), time.time())

    def trials(self, ids: list[tuple[int, int]]) -> dict[tuple[int, int], TrialBeat | None]:
        """``trial()`` for many ``(study_id, trial_id)`` pairs in one round trip."""
        if not ids:
            return {}
        raws = self.client.mget([self.trial_key(s, t) for s, t in ids])
        now = time.time()
        return {
            key: None if raw is None else _trial_beat(json.loads(raw), now)
            for key, raw in zip(ids, raws, strict=True)
        }

    def prune(self, *, older_than_s: float) -> int:
        """Delete worker entries silent for longer than ``older_than_s``; returns how many."""
        stale = [b.worker for b in self.workers(online_only=False) if b.age_s > older_than_s]
        if stale:
            self.client.hdel(self.workers_key, *stale)
        return len(stale)


def _trial_ref(data: dict[str, Any] | None) -> TrialRef | None:
    return None if data is None else TrialRef(**data)


def _worker_beat(data: dict[str, Any], now: float) -> WorkerBeat:
    return WorkerBeat(
        worker=data["worker"],
        device=data["device"],
        pid=int(data["pid"]),
        ts=data["ts"],
        age_s=max(0.0, now - data["ts"]),
        trial=_trial_ref(data.get("trial")),
        trial_started_at=data.get("trial_started_at"),
        queues=tuple(data.get("queues") or ()),
    )


def _trial_beat(data: dict[str, Any], now: float) -> TrialBeat:
    return TrialBeat(
        trial=TrialRef(**data["trial"]),
        worker=data["worker"],
        ts=data["ts"],
        age_s=max(0.0, now - data["ts"]),
        started_at=data["started_at"],
        step=data.get("step"),
        loss=data.get("loss"),
    )


class HeartbeatPublisher:
    """A worker process's heartbeat: a daemon thread plus immediate beats on trial start/end.

    Redis errors are logged, never raised: a broker blip must not fail a running trial
    (if it lasts, the trial's key expires and the service treats the runner as lost).
    """

    def __init__(
        self,
        store: HeartbeatStore,
        *,
        worker: str,
        device: str,
        interval_s: float,
        queues: tuple[str, ...] = (),
    ):
        self.store = store
        self.worker = worker
        self.device = device
        self.interval_s = interval_s
        self.queues = queues  # what this worker consumes: the service counts consumers
        self._lock = threading.Lock()
        self._trial: TrialRef | None = None
        self._started_at: float | None = None
        self._progress: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> HeartbeatPublisher:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="scaletune-heartbeat", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 1.0)
        self._safely(self.store.remove_worker, self.worker)

    def begin_trial(self, trial: TrialRef) -> None:
        with self._lock:
            self._trial, self._started_at, self._progress = trial, time.time(), {}
            self._write()

    def progress(self, *, step: int, loss: float) -> None:
        """Remember the latest progress; the next periodic beat carries it."""
        self._progress = {"step": int(step), "loss": float(loss)}  # one atomic rebinding

    def end_trial(self) -> None:
        # Under the lock, so a periodic beat cannot rewrite the trial's key after its removal.
        with self._lock:
            trial, self._trial, self._started_at = self._trial, None, None
            self._write(ended=trial)

    def beat(self) -> None:
        with self._lock:
            self._write()

    def _write(self, *, ended: TrialRef | None = None) -> None:
        self._safely(
            self.store.write,
            worker=self.worker,
            device=self.device,
            trial=self._trial,
            started_at=self._started_at,
            progress=dict(self._progress),
            ended=ended,
            queues=self.queues,
        )

    def _loop(self) -> None:
        self.beat()
        while not self._stop.wait(self.interval_s):
            self.beat()

    @staticmethod
    def _safely(fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except redis.RedisError as exc:
            logger.warning("heartbeat write failed: %s", exc)
