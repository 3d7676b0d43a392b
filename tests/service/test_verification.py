"""Issue 3's verification trial and warm start, on a real store with real fitted rules."""

from __future__ import annotations

import math

import pytest

from search.scaling.rules import ScalingRules
from search.space import SearchSpace
from service.config import Settings
from service.domain import StudySpec, StudyState, TrialState
from service.orchestration.scheduler import Scheduler
from service.orchestration.verification import (
    VERIFICATION_REASON,
    VerificationPendingError,
    request_verification,
    studies_with_pending_verification,
    verification_status,
)
from service.storage import repository as repo
from service.storage.db import transaction
from tests.service.factories import (
    FakeClock,
    RecordingDispatcher,
    finished_study_with_rules,
    make_spec,
)
from workers.contracts import TrialResult
from workers.objectives.base import NullContext

pytestmark = pytest.mark.integration


def test_verification_trial_runs_past_the_budget_and_reports_predicted_vs_observed(
    sqlite_sessions,
) -> None:
    study_id, objective = finished_study_with_rules(sqlite_sessions)
    dispatcher = RecordingDispatcher()
    scheduler = Scheduler(
        sessions=sqlite_sessions,
        settings=Settings(database_url="sqlite://"),
        clock=FakeClock(),
        dispatcher=dispatcher,
    )
    with transaction(sqlite_sessions) as session:
        trial_id = request_verification(session, study_id=study_id, scale_factor=10.0, now=5.0).id
        rules = ScalingRules.model_validate(repo.get_study(session, study_id=study_id).rules)
    with transaction(sqlite_sessions) as session, pytest.raises(VerificationPendingError):
        request_verification(session, study_id=study_id, scale_factor=10.0, now=5.0)

    with transaction(sqlite_sessions) as session:  # the control worker's tick steps it
        assert studies_with_pending_verification(session) == [study_id]
    assert scheduler.step(study_id).dispatched == [trial_id]  # the budget is spent
    (request,) = dispatcher.take()
    outcome = objective.run(request.params, seed=request.seed, context=NullContext())
    result = TrialResult(
        study_id=study_id,
        trial_id=trial_id,
        attempt=request.attempt,
        status="completed",
        loss=outcome.loss,
        cost_seconds=outcome.cost_seconds,
        metrics=outcome.metrics,
    )
    report = scheduler.step(study_id, results=[result])
    assert report.state == StudyState.COMPLETE

    with transaction(sqlite_sessions) as session:
        status = verification_status(session, study_id=study_id)
        assert studies_with_pending_verification(session) == []
    assert status["state"] == TrialState.COMPLETE
    verdict = status["report"]
    predicted = verdict["predicted"]
    assert verdict["observed_loss"] == pytest.approx(outcome.loss)
    assert verdict["within_interval"] == (predicted["low"] <= outcome.loss <= predicted["high"])
    # the trial sits a decade beyond the largest compute the rules saw
    assert math.log10(verdict["compute"] / rules.observed.compute_max) == pytest.approx(1.0, 0.1)
    # the engine never learns of it: a restart rebuilds the study as it completed
    suggestion_ids = [o.suggestion_id or "" for o in scheduler.engine_for(study_id).observations]
    assert suggestion_ids and not any(s.startswith(VERIFICATION_REASON) for s in suggestion_ids)


def test_verify_routes_refuse_without_rules_or_while_pending(client_and_rules_study) -> None:
    client, study_id, _ = client_and_rules_study
    plain = client.post("/studies", json=make_spec().model_dump(mode="json")).json()["id"]
    no_rules = client.post(f"/studies/{plain}/verify")
    assert no_rules.status_code == 404 and "no scaling rules" in no_rules.json()["detail"]
    assert client.post(f"/studies/{study_id}/verify", json={"scale_factor": 0.5}).status_code == 422

    first = client.post(f"/studies/{study_id}/verify", json={"scale_factor": 20.0})
    assert first.status_code == 201 and first.json()["state"] == TrialState.WAITING
    assert first.json()["report"] is None
    again = client.post(f"/studies/{study_id}/verify")
    assert again.status_code == 409 and "wait for it to finish" in again.json()["detail"]
    pending = client.get(f"/studies/{study_id}/verification").json()
    assert pending["trial_id"] == first.json()["trial_id"] and pending["report"] is None

    # an external runner is handed the verification trial though the study is COMPLETE
    (item,) = client.post(f"/studies/{study_id}/ask", json={"count": 2}).json()["data"]
    assert item["trial_id"] == pending["trial_id"]
    metrics = {"n_params": item["params"]["n_params"], "tokens": item["params"]["tokens"]}
    told = client.post(
        f"/trials/{item['trial_id']}/tell", json={"loss": 2.5, "cost": 1.0, "metrics": metrics}
    )
    assert told.json()["outcome"] == "recorded"
    done = client.get(f"/studies/{study_id}/verification").json()
    assert done["state"] == TrialState.COMPLETE and done["report"]["observed_loss"] == 2.5
    assert client.get(f"/studies/{study_id}").json()["state"] == StudyState.COMPLETE


def test_warm_start_centres_the_space_where_the_rules_point(client_and_rules_study) -> None:
    client, source_id, sessions = client_and_rules_study
    with transaction(sessions) as session:
        source = repo.get_study(session, study_id=source_id)
        rules = ScalingRules.model_validate(source.rules)
        space = SearchSpace.model_validate(source.spec["space"])
    compute = 30.0 * rules.observed.compute_max
    body = make_spec(space=space, warm_start={"study_id": source_id, "compute": compute})
    created = client.post("/studies", json=body.model_dump(mode="json"))
    assert created.status_code == 201, created.text
    with transaction(sessions) as session:
        spec = StudySpec.model_validate(repo.get_study(session, study_id=created.json()["id"]).spec)
    assert spec.warm_start is not None and spec.warm_start.study_id == source_id
    recommended = rules.predict(compute=compute).params
    moved = 0
    for before, after in zip(space.params, spec.space.params, strict=True):
        if after.name not in recommended or after.kind == "choice":
            continue
        value = recommended[after.name]
        low = after.min if after.min is not None else value
        high = after.max if after.max is not None else value
        assert after.center == pytest.approx(min(max(value, low), high), rel=1e-9)
        moved += after.center != pytest.approx(before.center)
    assert moved >= 1

    plain = client.post("/studies", json=make_spec().model_dump(mode="json")).json()["id"]
    refused = make_spec(warm_start={"study_id": plain})
    response = client.post("/studies", json=refused.model_dump(mode="json"))
    assert response.status_code == 400 and "no scaling rules" in response.json()["detail"]
