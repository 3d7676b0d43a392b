"""Where the API gets trials for ask/tell and how it wakes the scheduler.

Two implementations of one small interface, picked by ``Settings.proposals``:
- ``ControlProposals`` (distributed; the API never imports the engine or torch):
  hands out the proposal buffer that the control worker keeps filled, and sends
  ``STEP_TASK`` messages; an empty buffer is refilled within a short wait;
- ``InlineProposals`` (single process, tests): owns a ``Scheduler`` and steps it in the
  request; the engine (and torch) is imported on first use only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.orchestration.studies import take_buffered
from service.storage.db import transaction
from service.storage.tables import TrialRow

if TYPE_CHECKING:  # the engine (torch) loads only where proposals are inline
    from celery import Celery

    from service.orchestration.scheduler import Scheduler


class Proposals(Protocol):
    def ask(self, study_id: int, *, count: int) -> list[TrialRow]: ...

    def kick(self, study_id: int) -> None: ...

    def close(self) -> None: ...


class ControlProposals:
    """Buffer hand-out plus messages to the control worker."""

    def __init__(
        self, *, sessions: sessionmaker[Session], settings: Settings, wait_seconds: float = 5.0
    ) -> None:
        from service.orchestration.messaging import create_sender

        self.sessions = sessions
        self.settings = settings
        self.wait_seconds = wait_seconds
        self.sender = create_sender(settings)

    def close(self) -> None:
        self.sender.close()

    def kick(self, study_id: int) -> None:
        from service.orchestration.messaging import request_step

        request_step(self.sender, settings=self.settings, study_id=study_id)

    def ask(self, study_id: int, *, count: int) -> list[TrialRow]:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            trials = self._take(study_id, count)
            if trials or time.monotonic() > deadline:
                self.kick(study_id)  # refill behind the hand-out
                return trials
            self.kick(study_id)
            time.sleep(0.1)

    def _take(self, study_id: int, count: int) -> list[TrialRow]:
        with transaction(self.sessions) as session:
            return take_buffered(
                session,
                study_id=study_id,
                count=count,
                now=time.time(),
                lease_seconds=self.settings.lease_seconds,
            )


class InlineProposals:
    """A scheduler in the API process itself (dispatching through Celery by name)."""

    def __init__(self, *, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._scheduler: Scheduler | None = None
        self._sender: Celery | None = None

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            from service.orchestration.messaging import CeleryDispatcher, create_sender
            from service.orchestration.scheduler import Scheduler

            self._sender = create_sender(self.settings)
            self._scheduler = Scheduler(
                sessions=self.sessions,
                settings=self.settings,
                dispatcher=CeleryDispatcher(self._sender),
            )
        return self._scheduler

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()

    def kick(self, study_id: int) -> None:
        """Step the study now. Callers kick after committing what the request stored, so
        a step that fails is logged (and an unrunnable study stopped with its reason), as
        on the control worker's tick, not turned into a 500 for a request that
        succeeded (a client would retry an import that is already stored)."""
        self.scheduler.step_each([study_id])

    def ask(self, study_id: int, *, count: int) -> list[TrialRow]:
        return self.scheduler.ask_external(study_id, count=count)
