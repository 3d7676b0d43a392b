"""Scaling rules: how optimal hyperparameters move with model size, tokens and compute.

Pure computation on observations (numpy/scipy/pydantic); the rules file format
(JSON/YAML) is the one piece of I/O, so a training script can load rules with only
this package installed.
"""
