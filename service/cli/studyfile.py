"""Study files: a YAML (or JSON) ``StudySpec`` on disk, with errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from service.domain import StudySpec


class StudyFileError(ValueError):
    """A study file that cannot be read or does not describe a valid study."""


def load_study_file(path: Path) -> StudySpec:
    """Parse and validate ``path``; raises ``StudyFileError`` naming the bad field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise StudyFileError(f"cannot read study file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyFileError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        raise StudyFileError(
            f"{path}: the file is empty; a study needs at least name, objective and budget"
        )
    if not isinstance(data, dict):
        raise StudyFileError(
            f"{path} must hold a mapping with at least name, objective and budget; "
            f"got {type(data).__name__}"
        )
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise StudyFileError(f"{path} is not a valid study:\n{describe(exc)}") from exc


def describe(exc: ValidationError) -> str:
    """One line per problem: where it is and what is wrong."""
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  - {where}: {error['msg']}")
    return "\n".join(lines)
