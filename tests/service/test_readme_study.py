"""The README's example study file, as a reader would copy it: it runs through
``scaletune run`` with its optional lines switched on (the budget cut to a few trials),
and a seed repeats an embedded run with one trial in flight, as its "seed" concept says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from service.cli import app
from service.config import Settings
from service.domain import StudySpec
from service.orchestration.embedded import run_embedded
from service.orchestration.scheduler import Scheduler
from service.storage import repository as repo
from service.storage.db import make_engine, make_sessionmaker, migrate, transaction

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_study() -> str:
    """The ```yaml block that starts with ``# study.yaml``, its optional settings (the
    commented ``key: value`` lines) switched on."""
    blocks = re.findall(r"```yaml\n(# study\.yaml\n.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README's study example is one ```yaml block"
    switched_on = re.sub(r"^# (objective_options: .*?)\s+#.*$", r"\1", blocks[0], flags=re.M)
    assert switched_on != blocks[0], "the example suggests objective_options"
    return switched_on


def test_the_readme_study_runs_with_its_optional_options(tmp_path: Path) -> None:
    data = yaml.safe_load(readme_study())
    StudySpec.model_validate(data)  # as written, budget and all
    data["budget"] = {"max_trials": 6}  # a few trials: the example's 64 take minutes
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["run", str(study), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    assert "finished: COMPLETE" in result.output


def _run_once(path: Path) -> list[tuple]:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    settings = Settings(database_url=url)
    spec = StudySpec(
        name="seeded",
        objective="testbed",
        budget={"max_trials": 7},
        in_flight=1,
        seed=3,
        search={"n_startup": 4},
    )
    study_id = Scheduler(sessions=sessions, settings=settings).create_study(spec)
    run_embedded(study_id=study_id, sessions=sessions, settings=settings, workers=1)
    with transaction(sessions) as session:
        rows, _ = repo.list_trials(session, study_id=study_id)
        trials = [(t.params, t.loss, t.state) for t in rows]
    engine.dispose()
    return trials


def test_one_trial_in_flight_embedded_repeats_a_run_from_its_seed(tmp_path: Path) -> None:
    first = _run_once(tmp_path / "a.db")
    assert len(first) >= 7 and first == _run_once(tmp_path / "b.db")
