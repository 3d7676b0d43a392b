"""Reclaiming RUNNING trials whose lease ran out, the first part of every step.

A trial whose worker went silent is requeued (infrastructure) or, once its attempts are
used up, failed; one past its hard time limit is failed (the configuration's fault). A
trial no worker ever took is not silent but waiting: it keeps its place while its queue's
workers are busy or absent (a study whose queue no live worker consumes is logged once),
and is sent again, without counting an attempt, only when an idle worker of its queue
should have taken it (its message was lost). A reclaimed attempt is retired
(``service.orchestration.fleet``), so a worker handed it later drops it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.orm import Session

from service.config import Settings
from service.domain import StudySpec, TrialState
from service.storage import repository as repo
from service.storage.tables import StudyRow, TrialRow
from workers.contracts import attempt_task_id
from workers.heartbeat import QueueConsumers

logger = logging.getLogger(__name__)

HeartbeatSource = Callable[[list[TrialRow]], dict[int, float]]


class Fleet(Protocol):
    """What the scheduler learns of the trial workers besides heartbeats, and where it
    retires reclaimed attempts (``service.orchestration.fleet.RedisFleet``); None answers:
    unknown."""

    def consumers(self) -> dict[str, QueueConsumers] | None: ...

    def started(self, task_ids: list[str]) -> set[str] | None: ...

    def retire(self, task_ids: list[str]) -> None: ...


class Reclaimer:
    """Lease checks of one scheduler, with what it knows of the workers (heartbeats and
    the fleet; None for either: every dispatched trial counts as taken and silent)."""

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        heartbeats: HeartbeatSource | None = None,
        fleet: Fleet | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.heartbeats = heartbeats
        self.fleet = fleet
        self._unserved: set[tuple[int, str]] = set()  # (study, queue) already warned of

    def consumers(self) -> dict[str, QueueConsumers] | None:
        return self.fleet.consumers() if self.fleet is not None else None

    def retire(self, task_ids: list[str]) -> None:
        """Tell the fleet the attempts given up on, so a worker handed one drops it."""
        if task_ids and self.fleet is not None:
            self.fleet.retire(task_ids)

    def reclaim(
        self,
        session: Session,
        study: StudyRow,
        spec: StudySpec,
        *,
        consumers: dict[str, QueueConsumers] | None,
        retired: list[str],
    ) -> list[int]:
        """Requeue or fail RUNNING trials whose lease ran out; returns requeued ids and
        adds the task ids of the attempts given up on to ``retired``."""
        now = self.clock()
        expired = repo.expired_trials(session, study_id=study.id, now=now)
        fresh = self.heartbeats(expired) if self.heartbeats and expired else {}
        taken = self._taken(expired)
        grace = self.settings.heartbeat_grace_seconds
        requeued = []
        for trial in expired:
            beat = fresh.get(trial.id)
            task_id = attempt_task_id(study.id, trial.id, trial.attempt)
            if beat is not None and now - beat < grace:
                repo.heartbeat(session, trial=trial, now=beat, lease_seconds=grace)
                continue
            if trial.id not in taken and not _worth_resending(trial, consumers):
                # Still queued behind busy workers, or no live worker consumes its queue:
                # resending would only queue it again. It waits, no attempt spent.
                trial.lease_expires_at = now + grace
                continue
            retired.append(task_id)
            if _past_time_limit(trial, spec, now):
                _fail_timed_out(session, trial, spec, now)
            elif trial.id not in taken or repo.attempts_used(trial) < self.settings.max_attempts:
                repo.requeue_trial(session, trial=trial, now=now, started=trial.id in taken)
                requeued.append(trial.id)
            else:
                attempts = repo.attempts_used(trial)
                _fail(
                    session,
                    trial,
                    now,
                    cost_seconds=0.0,
                    result_key="reclaimed",
                    kind="infrastructure",
                    reason=f"no heartbeat after {attempts} attempts",
                )
        return requeued

    def _taken(self, trials: list[TrialRow]) -> set[int]:
        """Ids of ``trials`` whose current attempt a worker (or an external runner) took;
        every one of them when the fleet cannot say."""
        by_task = {
            attempt_task_id(t.study_id, t.id, t.attempt): t.id for t in trials if not t.external
        }
        started = self.fleet.started(list(by_task)) if self.fleet and by_task else None
        if started is None:
            return {t.id for t in trials}
        return {t.id for t in trials if t.external} | {by_task[task] for task in started}

    def warn_if_unserved(
        self,
        study: StudyRow,
        spec: StudySpec,
        tally: repo.Tally,
        consumers: dict[str, QueueConsumers] | None,
    ) -> None:
        """Log, once per study and queue (again after a worker came and went), that trials
        were sent to a queue no live worker consumes."""
        if consumers is None:
            return
        queue = self.settings.queue_name(spec.queue)
        key = (study.id, queue)
        dispatched = tally.by_state[TrialState.RUNNING] if spec.executor == "workers" else 0
        if not dispatched or queue in consumers:
            self._unserved.discard(key)
        elif key not in self._unserved:
            self._unserved.add(key)
            logger.warning(
                "study %s: %s on queue %r, which no live worker consumes; start a trial "
                "worker with -Q %s (or give the study a queue that has workers)",
                study.id,
                "1 trial waits" if dispatched == 1 else f"{dispatched} trials wait",
                queue,
                queue,
            )


def _worth_resending(trial: TrialRow, consumers: dict[str, QueueConsumers] | None) -> bool:
    """Whether a trial no worker took should be sent again: only when an idle worker of
    its queue would have taken it (its message is gone); unknown consumers: yes."""
    if consumers is None:
        return True
    serving = consumers.get(trial.queue or "")
    return serving is not None and serving.idle > 0


def _past_time_limit(trial: TrialRow, spec: StudySpec, now: float) -> bool:
    """Heartbeats seen and the hard limit passed: the run itself was too slow."""
    if spec.time_limit_s is None or trial.heartbeat_at is None:
        return False
    return now - (trial.dispatched_at or now) > spec.time_limit_s


def _fail_timed_out(session: Session, trial: TrialRow, spec: StudySpec, now: float) -> None:
    _fail(
        session,
        trial,
        now,
        cost_seconds=float(spec.time_limit_s or 0.0),
        result_key="timeout",
        kind="config",
        reason=f"ran past its {spec.time_limit_s}s limit",
    )


def _fail(
    session: Session,
    trial: TrialRow,
    now: float,
    *,
    cost_seconds: float,
    result_key: str,
    kind: str,
    reason: str,
) -> None:
    """Fail a reclaimed trial without a loss; ``kind`` says whose fault it was."""
    repo.finish_trial(
        session,
        trial=trial,
        now=now,
        failed=True,
        loss=None,
        cost_seconds=cost_seconds,
        result_key=result_key,
        failure_kind=kind,
        failure_reason=reason,
    )
