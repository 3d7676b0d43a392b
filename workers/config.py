"""Worker settings, and the broker settings the service shares, read from ``SCALETUNE_*``
environment variables.

Nothing here imports torch or Celery: the service's ``Settings`` extend ``BrokerSettings``
to send trials, receive results and read heartbeats where the workers use them. Build
settings explicitly (``WorkerSettings(broker_url=...)``) in tests; init kwargs win over
the environment (pydantic-settings' priority order).

The training data cache is ``SCALETUNE_DATA_DIR`` (default ``~/.cache/scaletune``); it is
read by ``workers.training.data`` itself, which must import without pydantic.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers.contracts import CONTROL_QUEUE, DEFAULT_TRIAL_QUEUE


class BrokerSettings(BaseSettings):
    """The broker, its queues and the heartbeat store, as every process must see them:
    the service's ``Settings`` and the workers' ``WorkerSettings`` both extend this one
    definition, so the same ``SCALETUNE_*`` variable means the same on both sides."""

    model_config = SettingsConfigDict(env_prefix="SCALETUNE_", extra="ignore")

    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis)")
    broker_key_prefix: str = Field(
        "", description="prefix of every broker key (isolates deployments sharing one Redis)"
    )
    queue_prefix: str = Field(
        "", description="prefix of every queue name (isolates studies sharing one broker)"
    )
    control_queue: str = Field(
        CONTROL_QUEUE, description="the control worker's queue (steps, ticks, results)"
    )
    heartbeat_redis_url: str | None = Field(None, description="defaults to broker_url")
    heartbeat_prefix: str = Field(
        "scaletune", min_length=1, description="prefix of worker heartbeat keys in Redis"
    )

    @property
    def heartbeat_url(self) -> str:
        return self.heartbeat_redis_url or self.broker_url

    def queue_name(self, name: str) -> str:
        """The broker-level name of a logical queue (``control``, ``gpu``, ...)."""
        return f"{self.queue_prefix}{name}"

    @property
    def control_queue_name(self) -> str:
        """The control queue's broker-level name: where results and step requests go."""
        return self.queue_name(self.control_queue)


class WorkerSettings(BrokerSettings):
    """Device binding, delivery and heartbeat knobs of a worker, on the shared broker
    settings.

    ``visibility_timeout_s``: with the Redis broker, a message taken but not acknowledged
    (``acks_late``: until the trial ends) is handed out again once it has been unacked
    this long, *even if its worker is still running it*. It must therefore exceed the
    longest trial's hard time limit. The same timeout is what brings back the trial of a
    worker whose whole process tree died (a dead pool child alone is handled at once by
    ``reject_on_worker_lost``); a dead worker is noticed sooner by its heartbeat.
    """

    result_backend: str | None = Field(
        None, description="None: results travel as RECORD_RESULT_TASK messages, not a backend"
    )
    device: str = Field("cpu", description="the device this worker process trains on: cpu, cuda:0")
    trial_queue: str = Field(
        DEFAULT_TRIAL_QUEUE,
        description="the queue a worker started without -Q consumes (under queue_prefix): "
        "the one studies use unless they name another",
    )
    visibility_timeout_s: float = Field(12 * 3600.0, gt=0)
    restore_interval_s: float = Field(
        60.0, gt=0, description="how often a worker sweeps for messages past the visibility timeout"
    )
    heartbeat_interval_s: float = Field(5.0, gt=0)
    heartbeat_ttl_s: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0, description="retries of an infrastructure failure")
    retry_backoff_s: float = Field(10.0, ge=0, description="first retry delay; doubles")
    retry_backoff_max_s: float = Field(300.0, ge=0)
    max_deliveries: int = Field(
        3, ge=1, description="deliveries of one attempt (worker lost mid-trial) before giving up"
    )
    worker_name: str | None = Field(None, description="defaults to host:pid")
    warm_up: bool = Field(
        False,
        description="train a tiny lm for a few steps in each pool process as it starts, so "
        "its first trial does not pay torch's start-up (imports, first kernels: seconds)",
    )

    @model_validator(mode="after")
    def _ttl_covers_interval(self) -> WorkerSettings:
        if self.heartbeat_ttl_s <= 2 * self.heartbeat_interval_s:
            raise ValueError(
                f"heartbeat_ttl_s ({self.heartbeat_ttl_s}) must exceed twice "
                f"heartbeat_interval_s ({self.heartbeat_interval_s}), or a live trial looks dead"
            )
        return self

    @property
    def default_queue(self) -> str:
        """The broker-level name of ``trial_queue`` (under the shared queue prefix)."""
        return self.queue_name(self.trial_queue)

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("cuda")
