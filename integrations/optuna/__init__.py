"""The Pareto search engine as an Optuna sampler (``ParetoCostSampler``).

``sampler`` holds the sampler and how it keeps the engine in step with a study;
``space_mapping`` maps Optuna's distributions onto the engine's search space.
"""

from integrations.optuna.sampler import (
    ParetoCostSampler,
    UnsupportedStudyError,
    UnusableTrialWarning,
    box_settings,
)
from integrations.optuna.space_mapping import space_from_distributions

__all__ = [
    "ParetoCostSampler",
    "UnsupportedStudyError",
    "UnusableTrialWarning",
    "box_settings",
    "space_from_distributions",
]
