"""The contract between a trial runner and an objective.

An objective turns one configuration into one outcome. It knows nothing of Celery or
the service: the task in ``workers.tasks`` (or an in-process pool) hands it a
``TrialContext`` for progress reports, and maps its outcome onto the wire format.

Failures come in two classes, and the difference matters to the search:
- caused by the configuration (out of memory, NaN/inf loss, divergence): the objective
  *returns* an outcome with ``failed=True`` and a reason, and the cost still spent;
  the failure model learns from it.
- caused by the infrastructure (data missing, device lost): the objective *raises*
  ``InfrastructureError``; the trial is retried and never blamed on the configuration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from search.space import SearchSpace


class InfrastructureError(RuntimeError):
    """A failure that is not the configuration's fault; the trial should be retried."""


class TrialContext(Protocol):
    """What a running objective may call back into."""

    device: str

    def report(self, *, step: int, loss: float, **metrics: float) -> None:
        """Record a point of the learning curve; doubles as a heartbeat."""

    def should_stop(self) -> bool:
        """True once the trial was cancelled; the objective should return promptly."""


class NullContext:
    """A context for running an objective directly (tests, notebooks): keeps the curve."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.curve: list[dict[str, float]] = []

    def report(self, *, step: int, loss: float, **metrics: float) -> None:
        self.curve.append({"step": step, "loss": loss, **metrics})

    def should_stop(self) -> bool:
        return False


@dataclass
class ObjectiveOutcome:
    """What one run of an objective produced.

    ``loss`` is None when ``failed``. ``cost_seconds`` is device wall time (GPU-seconds
    for a GPU worker), or the simulated equivalent for a synthetic objective.
    ``curve`` holds ``{"step", "tokens", "loss"}`` points, ``metrics`` anything else
    (``n_params``, ``tokens``, ``tokens_per_second``, ``mfu``, ...).
    """

    loss: float | None
    cost_seconds: float
    flops: float | None = None
    failed: bool = False
    failure_reason: str | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


class Objective(ABC):
    """A named, registered thing a trial can run."""

    name: ClassVar[str]

    @abstractmethod
    def default_space(self) -> SearchSpace:
        """The search space a study on this objective starts from if it gives none."""

    @abstractmethod
    def run(self, params: dict[str, Any], *, seed: int, context: TrialContext) -> ObjectiveOutcome:
        """Run one trial of ``params``; deterministic given ``seed`` where the device allows."""
