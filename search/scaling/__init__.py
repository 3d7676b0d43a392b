"""Scaling rules: how optimal hyperparameters move with model size, tokens and compute.

Pure computation on observations (numpy/scipy/pydantic); the rules file format
(JSON/YAML) is the one piece of I/O, so a training script can load rules with only
this package installed.
"""

from search.scaling.chinchilla import ChinchillaFit, fit_chinchilla
from search.scaling.fitting import fit_scaling_rules
from search.scaling.rules import (
    SCHEMA_VERSION,
    HyperparameterRule,
    Interval,
    ParamPrediction,
    Prediction,
    ScalingAxes,
    ScalingRules,
)
from search.scaling.verification import VerificationReport, verification_trial, verify
from search.scaling.warm_start import warm_start_space

__all__ = [
    "SCHEMA_VERSION",
    "ChinchillaFit",
    "HyperparameterRule",
    "Interval",
    "ParamPrediction",
    "Prediction",
    "ScalingAxes",
    "ScalingRules",
    "VerificationReport",
    "fit_chinchilla",
    "fit_scaling_rules",
    "verification_trial",
    "verify",
    "warm_start_space",
]
