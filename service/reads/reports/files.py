"""Scaling reports of stored studies, written once per study state and served as files."""

from __future__ import annotations

import re
from pathlib import Path

from search.scaling import ScalingRules
from service.reads.reports import write_scaling_report
from service.reads.study_rules import observations
from service.storage.tables import StudyRow, TrialRow

REPORT_NAME = "scaling-report.md"
_SAFE_FILE = re.compile(r"^[A-Za-z0-9_.\-]+\.(png|md)$")


class NoReportError(LookupError):
    """The study has no scaling rules (yet), so no report."""


def report_dir(*, study: StudyRow, trials: list[TrialRow], base: Path) -> Path:
    """The directory holding ``study``'s report, written if its rules changed since."""
    if study.rules is None:
        raise NoReportError(f"study {study.id} has no scaling rules: {study.message or ''}")
    out = base / f"study-{study.id}-{int(study.updated_at * 1000)}"
    if not (out / REPORT_NAME).exists():
        rules = ScalingRules.model_validate(study.rules)
        write_scaling_report(rules, observations(trials), out)
    return out


def report_file(directory: Path, name: str) -> Path:
    """A file of the report by name; refuses anything but a plain .md/.png name."""
    if not _SAFE_FILE.match(name) or not (directory / name).is_file():
        raise NoReportError(f"no report file {name!r}")
    return directory / name
