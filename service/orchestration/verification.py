"""Issue 3's "using the rules" in the service: a verification trial and warm starts.

A verification trial is one configuration the rules recommend beyond the observed
budget (``search.scaling.verification_trial``), added to a finished study on request.
It is an explicit extra: stored as a WAITING trial with reason ``"verification"``,
dispatched by the scheduler even though the study is COMPLETE (the study stays
COMPLETE: a finished study never reopens, and nothing else is asked for it), outside
the budget, and never learned from (``service.domain.learns_from``): the engine, and so
a restarted study, stay as they were when it completed.

Warm start re-centres a new study's space where a finished study's rules point
(``search.scaling.warm_start_space``) and seeds its search settings from it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from search.scaling.rules import ScalingRules
from search.scaling.verification import verification_trial, verify
from search.scaling.warm_start import warm_start_space
from search.types import Suggestion
from service.domain import (
    FINAL_TRIAL_STATES,
    VERIFICATION_REASON,
    StudySpec,
    StudyState,
    TrialState,
    row_observation,
)
from service.storage import repository as repo
from service.storage.tables import StudyRow, TrialRow


class NoRulesError(LookupError):
    """The study has no fitted scaling rules (not finished, or nothing to fit)."""


class VerificationPendingError(ValueError):
    """A verification trial of this study has not finished yet."""


def study_rules(session: Session, *, study_id: int) -> tuple[ScalingRules, StudySpec]:
    """The study's rules and spec; NoRulesError while it has none."""
    study = repo.get_study(session, study_id=study_id)
    if study.rules is None:
        raise NoRulesError(
            f"study {study_id} has no scaling rules (it is {study.state}); "
            "rules are fitted when a study with scaling axes completes"
        )
    return ScalingRules.model_validate(study.rules), StudySpec.model_validate(study.spec)


def request_verification(
    session: Session, *, study_id: int, scale_factor: float, now: float
) -> TrialRow:
    """Add the verification trial at ``scale_factor`` x the largest observed compute."""
    study = repo.get_study(session, study_id=study_id, lock=True)
    rules, spec = study_rules(session, study_id=study_id)
    latest = latest_verification(session, study_id=study_id)
    if latest is not None and TrialState(latest.state) not in FINAL_TRIAL_STATES:
        raise VerificationPendingError(
            f"verification trial {latest.id} of study {study_id} is {latest.state}; "
            "wait for it to finish"
        )
    if spec.space is None:
        raise NoRulesError(f"study {study_id} has rules but no resolved space")
    params = verification_trial(rules, spec.space, scale_factor=scale_factor)
    suggestion = Suggestion(
        suggestion_id=f"verification-{study.next_number}",
        params=params,
        reason=VERIFICATION_REASON,
    )
    return repo.add_trial(
        session, study=study, suggestion=suggestion, now=now, external=spec.executor == "external"
    )


def latest_verification(session: Session, *, study_id: int) -> TrialRow | None:
    return session.scalars(
        select(TrialRow)
        .where(TrialRow.study_id == study_id, TrialRow.reason == VERIFICATION_REASON)
        .order_by(TrialRow.number.desc())
        .limit(1)
    ).first()


def waiting_verifications(session: Session, *, study_id: int) -> list[TrialRow]:
    """The study's WAITING verification trials (dispatched outside the budget)."""
    return list(
        session.scalars(
            select(TrialRow).where(
                TrialRow.study_id == study_id,
                TrialRow.reason == VERIFICATION_REASON,
                TrialRow.state == TrialState.WAITING,
            )
        ).all()
    )


def studies_with_pending_verification(session: Session) -> list[int]:
    """Finished studies whose verification trial is unfinished (to dispatch or reclaim)."""
    return list(
        session.scalars(
            select(TrialRow.study_id)
            .join(StudyRow, StudyRow.id == TrialRow.study_id)
            .where(
                StudyRow.state == StudyState.COMPLETE,
                TrialRow.reason == VERIFICATION_REASON,
                TrialRow.state.in_([TrialState.WAITING, TrialState.RUNNING]),
            )
            .distinct()
        ).all()
    )


def verification_status(session: Session, *, study_id: int) -> dict[str, Any]:
    """The latest verification: its state, and predicted vs observed once it finished."""
    rules, _ = study_rules(session, study_id=study_id)
    trial = latest_verification(session, study_id=study_id)
    if trial is None:
        raise LookupError(f"study {study_id} has no verification trial; POST .../verify first")
    out: dict[str, Any] = {"trial_id": trial.id, "state": trial.state, "params": trial.params}
    if trial.state in (TrialState.COMPLETE, TrialState.FAILED):
        out["report"] = verify(rules, row_observation(trial)).model_dump(mode="json")
    else:
        out["report"] = None
    return out


def apply_warm_start(session: Session, *, spec: StudySpec) -> StudySpec:
    """``spec`` with its space re-centred on the source study's rules at ``compute``.

    The source's resolved space stands in when ``spec`` gives none; its search
    settings seed the new study's (the new spec's own keys win); ``compute`` defaults
    to 10x the source's largest observed compute.
    """
    if spec.warm_start is None:
        return spec
    source_id = spec.warm_start.study_id
    try:
        rules, source = study_rules(session, study_id=source_id)
    except NoRulesError as exc:
        raise NoRulesError(f"cannot warm start from study {source_id}: {exc}") from exc
    space = spec.space or source.space
    if space is None:
        raise NoRulesError(f"cannot warm start from study {source_id}: it has no resolved space")
    compute = spec.warm_start.compute or 10.0 * rules.observed.compute_max
    return spec.model_copy(
        update={
            "space": warm_start_space(rules, space, compute=compute),
            "search": {**source.search, **spec.search},
        }
    )
