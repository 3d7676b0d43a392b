"""The dashboard end to end: the real API under uvicorn, pages driven in headless Chromium.

The store (SQLite) holds a completed study with fitted scaling rules, a running study and
trials running on a queue; heartbeats are real keys in Redis. Each page is loaded in
Debian's chromium through its chromedriver (selenium), checked for what it draws, and
screenshotted (to a temporary folder, or to ``$SCALETUNE_SCREENSHOTS`` when set:
``SCALETUNE_SCREENSHOTS=docs/img pytest tests/service/test_dashboard_browser.py``
refreshes the README's images).
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import update

from search.scaling.laws import LinearLaw
from search.scaling.rules import inverse
from search.types import Observation, Suggestion
from service.domain import Budget, ScalingAxesSpec, StudySpec, StudyState
from service.orchestration.studies import create_study_row
from service.reads.study_rules import fit_rules
from service.storage import repository as repo
from service.storage import tenants
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction
from service.storage.tables import StudyRow
from tests.auth import ADMIN_TOKEN, bearer, issue_tenant_token
from tests.search.near_front_study import sample_study
from workers.heartbeat import HeartbeatStore, TrialRef
from workers.objectives.testbed_truth import TestbedConfig

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1360,1000",
)
WAIT_S = 20.0


# -- the store ---------------------------------------------------------------------------


def _add_finished(session, study: StudyRow, obs: Observation, *, key: str, t0: float) -> None:
    trial = repo.add_trial(
        session,
        study=study,
        now=t0,
        suggestion=Suggestion(suggestion_id=key, params=obs.params, reason="startup"),
    )
    repo.start_trial(session, trial=trial, now=t0, lease_seconds=600.0, queue="gpu")
    repo.finish_trial(
        session,
        trial=trial,
        now=t0 + 30.0,
        failed=obs.failed,
        loss=None if obs.failed else obs.loss,
        cost_seconds=obs.cost,
        metrics=obs.metrics,
        result_key="0",
        failure_kind="config" if obs.failed else None,
        worker="gpu0@node1",
    )


def _rules_study(sessions, observations: list[Observation], space) -> int:
    spec = StudySpec(
        name="lr-scaling",
        objective="testbed",
        budget=Budget(max_trials=len(observations)),
        space=space,
        scaling=ScalingAxesSpec(n_params="n_params", tokens="tokens"),
    )
    t0 = time.time() - 3600.0
    with transaction(sessions) as session:
        study = create_study_row(session, spec=spec, now=t0)
        for i, obs in enumerate(observations):
            _add_finished(session, study, obs, key=f"s{i}", t0=t0 + 10.0 * i)
        trials = repo.trials_in_state(session, study_id=study.id, states=["COMPLETE", "FAILED"])
        rules, why = fit_rules(spec, trials)
        assert rules is not None, why
        repo.save_rules(session, study=study, rules=rules, now=t0 + 3000.0)
        repo.set_study_state(session, study=study, state=StudyState.COMPLETE, now=t0 + 3000.0)
        return study.id


def _running_study(sessions, observations: list[Observation], space) -> tuple[int, list[int]]:
    """A running study: a few finished trials and two trials running on queue ``gpu``."""
    spec = StudySpec(
        name="batch-size-sweep",
        objective="testbed",
        budget=Budget(max_trials=40, max_cost=5e6),
        space=space,
        scaling=ScalingAxesSpec(n_params="n_params", tokens="tokens"),
    )
    now = time.time()
    with transaction(sessions) as session:
        study = create_study_row(session, spec=spec, now=now - 600.0)
        for i, obs in enumerate(observations[:-2]):
            _add_finished(session, study, obs, key=f"r{i}", t0=now - 500.0 + i)
        running = []
        for i, obs in enumerate(observations[-2:]):
            trial = repo.add_trial(
                session,
                study=study,
                now=now,
                suggestion=Suggestion(suggestion_id=f"run{i}", params=obs.params, reason="pareto"),
            )
            repo.start_trial(session, trial=trial, now=now, lease_seconds=600.0, queue="gpu")
            running.append(trial.id)
        return study.id, running


def _empty_study(sessions) -> int:
    """A study with no trial yet and no scaling axes."""
    spec = StudySpec(name="fresh", objective="testbed", budget=Budget(max_trials=8))
    with transaction(sessions) as session:
        return create_study_row(session, spec=spec, now=time.time()).id


@pytest.fixture(scope="module")
def store(tmp_path_factory, redis_url: str) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'scaletune.db'}"
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    objective, observations = sample_study(TestbedConfig(), seed=5, per_budget=12)
    space = objective.default_space()
    rules_id = _rules_study(sessions, observations, space)
    running_id, running = _running_study(sessions, observations[::9], space)
    empty_id = _empty_study(sessions)
    prefix = f"scaletune-ui-{uuid.uuid4().hex[:8]}"
    yield {
        "token": issue_tenant_token(sessions, tenant="default"),  # the studies' tenant
        "url": url,
        "folder": folder,
        "sessions": sessions,
        "rules_id": rules_id,
        "running_id": running_id,
        "running_trials": running,
        "empty_id": empty_id,
        "prefix": prefix,
        "redis_url": redis_url,
        "observations": observations,
    }
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()
    engine.dispose()


# -- the server and the browser ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(store: dict) -> Iterator[str]:
    """``uvicorn --factory service.api.app:create_app`` on a free port, until /ready answers."""
    port = _free_port()
    env = {
        **os.environ,
        "SCALETUNE_DATABASE_URL": store["url"],
        "SCALETUNE_BROKER_URL": store["redis_url"],
        "SCALETUNE_HEARTBEAT_PREFIX": store["prefix"],
        "SCALETUNE_REPORT_DIR": str(store["folder"] / "reports"),
        "SCALETUNE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    log = (store["folder"] / "uvicorn.log").open("w")
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app"]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, store["folder"] / "uvicorn.log")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _wait_ready(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"uvicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the API did not become ready within 60 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(
            f"the dashboard browser tests need Debian's chromium and its driver; missing: "
            f"{', '.join(missing)}. Install them with: {INSTALL}"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: ``$SCALETUNE_SCREENSHOTS`` if set, else a temporary folder."""
    target = os.environ.get("SCALETUNE_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(driver, condition, what: str):
    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(condition)
    except TimeoutException:
        logs = driver.execute_script("return document.getElementById('error')?.innerText")
        pytest.fail(f"timed out waiting for {what}; page error: {logs!r}")


def _open(driver, url: str) -> None:
    """Load ``url`` with the console log emptied, so each page is judged on its own."""
    driver.get_log("browser")
    driver.get(url)


def _no_page_errors(driver) -> None:
    """No error banner and no script error in the browser's console."""
    banner = driver.execute_script("return document.getElementById('error').innerText")
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert (banner, severe) == ("", [])


def _count(driver, css: str) -> int:
    return driver.execute_script(f"return document.querySelectorAll({css!r}).length")


def _screenshot(driver, path: Path, *, max_height: int = 2400) -> None:
    """The whole page (up to ``max_height`` px): the viewport is sized to the content."""
    height = driver.execute_script("return document.body.scrollHeight")
    metrics = {"width": 1360, "height": min(int(height), max_height), "deviceScaleFactor": 1}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False})
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert path.stat().st_size > 10_000


def _beat(store: dict) -> None:
    """Fresh heartbeats: one busy worker on the first running trial, one idle worker."""
    beats = HeartbeatStore.from_url(store["redis_url"], prefix=store["prefix"])
    trial = TrialRef(study_id=store["running_id"], trial_id=store["running_trials"][0])
    beats.write(worker="gpu0@node1", device="cuda:0", trial=trial, started_at=time.time() - 42)
    beats.write(worker="gpu1@node1", device="cuda:1", trial=None, started_at=None)
    beats.client.close()


def _api(server: str, path: str, store: dict):
    response = httpx.get(f"{server}{path}", headers=bearer(store["token"]), timeout=10.0)
    response.raise_for_status()
    return response.json()


def _use_token(driver, server: str, token: str | None) -> None:
    """Put ``token`` in the dashboard's sessionStorage (None: remove it), as its form does."""
    driver.get(f"{server}/health")  # any page of the API's origin
    driver.execute_script(
        "arguments[0] ? sessionStorage.setItem('scaletune.token', arguments[0])"
        " : sessionStorage.removeItem('scaletune.token')",
        token,
    )


@pytest.fixture(autouse=True)
def signed_in(server, browser, store) -> None:
    """Every page test runs with the studies' tenant's token in the browser."""
    _use_token(browser, server, store["token"])


# -- the pages ---------------------------------------------------------------------------


def test_without_a_token_the_page_asks_for_one_and_its_form_keeps_it(
    server, browser, store
) -> None:
    _use_token(browser, server, None)
    _open(browser, f"{server}/ui/")
    _wait(browser, lambda d: "missing API token" in d.find_element("id", "error").text, "401")
    assert _count(browser, "#studies tbody tr") == 0
    browser.find_element("id", "token").send_keys(store["token"])
    browser.find_element("id", "token-use").click()
    _wait(browser, lambda d: _count(d, "#studies tbody tr") == 3, "the studies, with the token")
    assert (
        browser.execute_script("return sessionStorage.getItem('scaletune.token')")
        == (store["token"])
    )
    assert store["token"] not in browser.page_source  # typed in, never shown
    browser.find_element("id", "token-forget").click()
    _wait(browser, lambda d: "missing API token" in d.find_element("id", "error").text, "401")


def test_studies_page_lists_state_progress_and_cost_bands(server, browser, store, shots) -> None:
    _open(browser, f"{server}/")  # redirects to /ui/
    _wait(browser, lambda d: _count(d, "#studies tbody tr") == 3, "three study rows")
    row = browser.find_element("css selector", f"tr[data-study='{store['rules_id']}']")
    assert "COMPLETE" in row.text and "lr-scaling" in row.text
    detail = _api(server, f"/studies/{store['rules_id']}", store)
    budget = detail["progress"]["max_trials"]
    assert f"{detail['progress']['dispatched']} / {budget} trials" in row.text
    chips = row.find_elements("css selector", ".band-chip")
    assert len(chips) == len(detail["best_per_cost_band"]) > 1
    running = browser.find_element("css selector", f"tr[data-study='{store['running_id']}']")
    assert "RUNNING" in running.text and "GPU-s" in running.text
    fresh = browser.find_element("css selector", f"tr[data-study='{store['empty_id']}']")
    assert "no completed trial yet" in fresh.text
    _no_page_errors(browser)
    _screenshot(browser, shots / "dashboard-studies.png")


def test_study_page_draws_front_rules_allocation_and_table(server, browser, store, shots) -> None:
    study_id = store["rules_id"]
    _open(browser, f"{server}/ui/study.html?id={study_id}")
    detail = _api(server, f"/studies/{study_id}", store)
    n_complete = detail["trials_by_state"].get("COMPLETE", 0)
    # every trial of a configuration on the front is outlined (a repeated one has several)
    n_front = sum(len(point["trial_ids"]) for point in detail["front"])
    drawn = "#front-chart circle, #front-chart .off-scale"  # off-scale: above the plotted range
    _wait(browser, lambda d: _count(d, drawn) == n_complete, "every completed trial drawn")
    assert _count(browser, "#front-chart g.front circle") == n_front
    total = sum(detail["trials_by_state"].values())
    assert _count(browser, "#trials tbody tr") == total
    assert _count(browser, "#trials tbody tr.on-front") == n_front

    rules = _api(server, f"/studies/{study_id}/rules", store)
    fitted = [r for r in rules["hyperparameters"] if r["vs_compute"] is not None]
    assert _count(browser, "#hp-charts .small-chart") == len(rules["hyperparameters"])
    assert _count(browser, "#hp-charts path.law-line") == len(fitted) > 0
    for rule in (r for r in fitted if r["supported"]):
        # a fit quality to act on, not R² (~1 for a law through estimated optima)
        where = f".small-chart[data-param='{rule['name']}'] .law"
        law = browser.find_element("css selector", where)
        assert "slope [" in law.text and "at the largest run" in law.text, law.text
        assert "R²" not in law.text
    assert _count(browser, "#allocation-chart path.alloc-N") == 1
    assert _count(browser, "#allocation-chart g.front-D circle") == n_front
    _no_page_errors(browser)
    _screenshot(browser, shots / "dashboard-study.png")


def test_study_page_of_a_study_without_trials_or_axes(server, browser, store) -> None:
    _open(browser, f"{server}/ui/study.html?id={store['empty_id']}")
    _wait(browser, lambda d: "fresh" in d.find_element("id", "summary").text, "the summary")
    _wait(browser, lambda d: "no scaling axes" in d.find_element("id", "rules-note").text, "note")
    assert "No completed trial yet" in browser.find_element("id", "front-chart").text
    assert _count(browser, "#trials tbody tr") == 0
    assert not browser.find_element("id", "allocation-card").is_displayed()
    _no_page_errors(browser)


def test_an_unknown_study_says_so(server, browser) -> None:
    _open(browser, f"{server}/ui/study.html?id=999")
    _wait(browser, lambda d: "no study with id 999" in d.find_element("id", "error").text, "404")
    assert _live(browser) == "failed · HTTP 404 not found"


def _live(driver) -> str:
    return driver.find_element("id", "live").text


def test_the_status_dot_says_what_failed_after_a_401(server, browser) -> None:
    """It leaves "loading…" and names the failure, on every page; a token brings it back."""
    _use_token(browser, server, None)
    for page in ("", "study.html?id=1", "queues.html"):
        _open(browser, f"{server}/ui/{page}")
        _wait(browser, lambda d: _live(d) != "loading…", f"the status of /ui/{page}")
        assert _live(browser) == "failed · HTTP 401 not signed in"
        assert "stale" in browser.find_element("id", "live").get_attribute("class")
    _use_token(browser, server, "st_00000000_not-a-token")
    _open(browser, f"{server}/ui/")
    _wait(browser, lambda d: _live(d) == "failed · HTTP 401 not signed in", "an unknown token")


def _poisoned_tenant(store: dict) -> tuple[str, int, int]:
    """A tenant of its own with a study and one whose stored spec no longer loads (as a
    rule added later finds it): (its token, the good study's id, the poisoned one's)."""
    sessions = store["sessions"]
    token = issue_tenant_token(sessions, tenant="poisoned")
    spec = StudySpec(name="healthy", objective="testbed", budget=Budget(max_trials=8))
    with transaction(sessions) as session:
        tenant_id = tenants.find_tenant(session, name="poisoned").id
        good = create_study_row(session, spec=spec, now=time.time(), tenant_id=tenant_id)
        bad = create_study_row(
            session,
            spec=spec.model_copy(update={"name": "poisoned"}),
            now=time.time(),
            tenant_id=tenant_id,
        )
        broken = {**bad.spec, "search": {"cost_overshoot": None}}
        session.execute(update(StudyRow).where(StudyRow.id == bad.id).values(spec=broken))
        return token, good.id, bad.id


def test_a_study_whose_spec_no_longer_loads_leaves_the_studies_page_working(
    server, browser, store
) -> None:
    token, good, bad = _poisoned_tenant(store)
    _use_token(browser, server, token)
    _open(browser, f"{server}/ui/")
    _wait(browser, lambda d: _count(d, "#studies tbody tr") == 2, "both of the tenant's studies")
    healthy = browser.find_element("css selector", f"tr[data-study='{good}']")
    assert "healthy" in healthy.text and "0 / 8 trials" in healthy.text
    poisoned = browser.find_element("css selector", f"tr[data-study='{bad}']")
    assert "spec no longer loads" in poisoned.text and "RUNNING" in poisoned.text
    assert _live(browser).startswith("live · updated")
    _no_page_errors(browser)
    _open(browser, f"{server}/ui/study.html?id={bad}")
    _wait(browser, lambda d: _count(d, "#study-error") == 1, "the study page's error")
    assert "search.cost_overshoot" in browser.find_element("id", "study-error").text


def _worker_cell(driver, trial_id: int) -> str:
    return driver.execute_script(
        "const heads = [...document.querySelectorAll('#trials thead th')];"
        "const i = heads.findIndex((th) => th.textContent.startsWith('worker'));"
        "return document.getElementById('trial-' + arguments[0]).children[i].textContent;",
        trial_id,
    )


def test_a_running_trial_shows_its_worker_from_its_heartbeat_never_the_queue(
    server, browser, store
) -> None:
    """The trials were dispatched to queue ``gpu``; only the first has a worker's beat."""
    _beat(store)
    beating, silent = store["running_trials"]
    _open(browser, f"{server}/ui/study.html?id={store['running_id']}")
    _wait(browser, lambda d: _count(d, f"#trial-{silent}") == 1, "the running trials' rows")
    assert _worker_cell(browser, beating) == "gpu0@node1"
    assert _worker_cell(browser, silent) == "—"


def test_front_colours_by_a_hyperparameter(server, browser, store) -> None:
    _open(browser, f"{server}/ui/study.html?id={store['rules_id']}")
    _wait(browser, lambda d: _count(d, "#front-chart circle") > 10, "the front chart")
    fills = "return [...document.querySelectorAll('#front-chart circle')].map(c => c.getAttribute('fill'))"  # noqa: E501
    assert len(set(browser.execute_script(fills))) == 2  # front and the rest
    Select(browser.find_element("id", "colour-by")).select_by_value("learning_rate")
    _wait(browser, lambda d: _count(d, "#front-legend .legend-ramp") == 1, "a colour ramp")
    assert len(set(browser.execute_script(fills))) > 10


def test_drawn_rules_match_the_fitted_laws(server, browser, store) -> None:
    """The page's interval for a rule equals ``LinearLaw.predict`` at the same compute."""
    _open(browser, f"{server}/ui/study.html?id={store['rules_id']}")
    _wait(browser, lambda d: _count(d, "#hp-charts path.law-line") > 0, "the rule charts")
    rules = _api(server, f"/studies/{store['rules_id']}/rules", store)
    rule = next(r for r in rules["hyperparameters"] if r["vs_compute"] is not None)
    law = LinearLaw.model_validate(rule["vs_compute"])
    for compute in (rules["observed"]["compute_min"], 100 * rules["observed"]["compute_max"]):
        expected = [
            float(inverse(rule["transform"], v)[0])
            for v in law.predict(np.array([[math.log(compute)]]))
        ]
        drawn = browser.execute_script(
            "const v = Scaletune.evalLaw(arguments[0], [Math.log(arguments[1])], arguments[2]);"
            "return [v.estimate, v.lo, v.hi];",
            rule["vs_compute"],
            compute,
            rule["transform"],
        )
        assert drawn == pytest.approx(expected, rel=1e-4)
    assert expected[1] < expected[0] < expected[2]


def test_study_page_updates_while_trials_finish(server, browser, store) -> None:
    study_id = store["running_id"]
    _open(browser, f"{server}/ui/study.html?id={study_id}&poll=0.5")
    _wait(browser, lambda d: _count(d, "#trials tbody tr") > 0, "the trial table")
    before = _count(browser, "#trials tbody tr")
    complete_before = _count(browser, "#trials tbody tr .state-complete")
    obs = store["observations"][3]
    with transaction(store["sessions"]) as session:
        study = repo.get_study(session, study_id=study_id)
        _add_finished(session, study, obs, key=f"late-{uuid.uuid4().hex[:6]}", t0=time.time())
    _wait(browser, lambda d: _count(d, "#trials tbody tr") == before + 1, "the new trial's row")
    assert _count(browser, "#trials tbody tr .state-complete") == complete_before + 1


def test_queues_page_shows_queues_workers_and_heartbeat_ages(server, browser, store, shots) -> None:
    _beat(store)
    _open(browser, f"{server}/ui/queues.html")  # a tenant's token: the queue view is admin-only
    _wait(browser, lambda d: "needs an admin token" in d.find_element("id", "error").text, "403")
    _use_token(browser, server, ADMIN_TOKEN)
    _open(browser, f"{server}/ui/queues.html")
    _wait(browser, lambda d: _count(d, "#workers tbody tr") == 2, "two worker rows")
    queue = browser.find_element("css selector", "tr[data-queue='gpu']")
    # one running with a heartbeat, one waiting, and no worker consuming the queue (these
    # heartbeats name none): flagged, since the waiting trial cannot start
    assert queue.text.split()[1:] == ["1", "1", "0"]
    assert queue.find_element("css selector", ".unserved").text == "0"
    busy = browser.find_element("css selector", "tr[data-worker='gpu0@node1']")
    assert f"study {store['running_id']} · trial {store['running_trials'][0]}" in busy.text
    idle = browser.find_element("css selector", "tr[data-worker='gpu1@node1']")
    assert "idle" in idle.text and idle.find_element("css selector", ".age-ok").text.endswith("s")
    _no_page_errors(browser)
    _screenshot(browser, shots / "dashboard-queues.png")


def test_study_page_warns_while_no_live_worker_consumes_its_queue(server, browser, store) -> None:
    """The running study's queue is ``trials`` (its default); the workers of the other
    tests' heartbeats consume nothing, then one that consumes ``trials`` appears."""
    _open(browser, f"{server}/ui/study.html?id={store['running_id']}&poll=0.5")
    _wait(browser, lambda d: _count(d, "#unserved") == 1, "the unserved-queue warning")
    assert 'queue "trials"' in browser.find_element("id", "unserved").text
    beats = HeartbeatStore.from_url(store["redis_url"], prefix=store["prefix"])
    try:
        worker = {"worker": "cpu0@node2", "device": "cpu", "trial": None, "started_at": None}
        beats.write(**worker, queues=("trials",))
        _wait(browser, lambda d: _count(d, "#unserved") == 0, "the warning to go")
    finally:
        beats.remove_worker("cpu0@node2")
        beats.client.close()
    assert browser.find_element("id", "error").text == ""
