"""Taking the messages already waiting on the control queue, to handle them as one batch.

Celery's solo pool hands the control worker one message at a time, and a result recorded
per message pays a whole transaction (study lock, tally, commit) for one trial. When
results arrive faster than that, the task that received one result takes up to
``Settings.result_batch - 1`` more messages straight from the broker and the control
worker records each study's results in one transaction.

Delivery does not change: a message taken here sits in the broker's unacknowledged set,
exactly like one Celery delivered with ``acks_late``, and is acknowledged only after it
was handled (recorded and committed, the freed slots' trials sent). A control worker
killed mid-batch therefore loses nothing (the broker redelivers after its visibility
timeout, and recording is idempotent), and a message that fails is acknowledged after
its error is logged, as Celery does with a failing task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu import Connection, Queue
from kombu.exceptions import KombuError
from kombu.message import Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TakenMessage:
    """A control-queue task message taken off the broker and not yet acknowledged."""

    task: str
    args: list[Any]
    message: Message

    def ack(self) -> None:
        """Acknowledge after handling; a broker gone meanwhile only means a redelivery."""
        try:
            self.message.ack()
        except (KombuError, OSError) as exc:
            logger.warning("could not acknowledge a %s message: %s", self.task, exc)


class ControlQueueReader:
    """Takes waiting task messages of ``known_tasks`` off one queue, over its own
    connection (opened on first use, reopened after a broker error)."""

    def __init__(self, app: Celery, *, queue: str, known_tasks: frozenset[str]) -> None:
        self._app = app
        self._queue_name = queue
        self._known_tasks = known_tasks
        self._connection: Connection | None = None

    def take(self, limit: int) -> list[TakenMessage]:
        """Up to ``limit`` messages already waiting, oldest first; never blocks.

        Stops at a message of a task it does not know (put back on the queue for the
        Celery consumer) and at a broker error (what was taken is still returned).
        """
        taken: list[TakenMessage] = []
        if limit <= 0:
            return taken
        try:
            connection = self._open()
            channel = connection.default_channel
            waiting = channel.queue_declare(queue=self._queue_name).message_count
            queue = Queue(self._queue_name, no_declare=True)(channel)
            for _ in range(min(limit, waiting)):
                message = queue.get(no_ack=False, accept=["json"])
                if message is None:
                    break
                parsed = self._parse(message)
                if parsed is None:
                    message.requeue()
                    break
                taken.append(parsed)
        except self._broker_errors() as exc:
            logger.warning("taking more control messages failed: %s", exc)
            self._close()
        return taken

    def close(self) -> None:
        self._close()

    def _parse(self, message: Message) -> TakenMessage | None:
        """The task name and positional arguments of a task-protocol-2 JSON message."""
        task = (message.headers or {}).get("task")
        if task not in self._known_tasks:
            return None
        try:
            body = message.decode()  # [args, kwargs, embed]
        except (KombuError, ValueError):
            return None
        if not isinstance(body, list) or not body or not isinstance(body[0], list):
            return None
        return TakenMessage(task=task, args=body[0], message=message)

    def _open(self) -> Connection:
        if self._connection is None:
            # One connection attempt: the caller goes on with the message it has.
            self._connection = self._app.connection_for_read(transport_options={"max_retries": 1})
        return self._connection

    def _broker_errors(self) -> tuple[type[BaseException], ...]:
        """What a lost or refused broker raises, the open connection's transport errors
        included."""
        errors: tuple[type[BaseException], ...] = (KombuError, OSError)
        if self._connection is None:
            return errors
        return (
            errors
            + tuple(self._connection.connection_errors)
            + tuple(self._connection.channel_errors)
        )

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()
            except Exception as exc:  # closing a broken connection may fail in many ways
                logger.debug("closing the control reader's connection: %s", exc)
