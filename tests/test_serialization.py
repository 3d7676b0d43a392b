"""Nothing is pickled: no package imports a pickler, every Celery app speaks JSON only
(a pickled message is refused before it is decoded), and the engine's state is JSON
(``tests/search/test_engine.py::test_state_round_trips_through_json_and_continues_identically``)."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import dumps, loads

from service.config import Settings
from service.orchestration.control import create_control_celery
from service.orchestration.messaging import create_sender
from tests.test_architecture import _imported_roots
from workers.celery_app import create_celery

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search", "integrations", "service", "workers", "bench")
PICKLERS = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _sources() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def test_no_module_imports_a_pickler() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & PICKLERS) for path in _sources()
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_torch_load_is_never_called_without_weights_only() -> None:
    """``torch.load`` unpickles unless ``weights_only=True``."""
    calls = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                safe = any(
                    k.arg == "weights_only"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value is True
                    for k in node.keywords
                )
                calls.append((str(path.relative_to(ROOT)), node.lineno, safe))
    assert [c for c in calls if not c[2]] == []


@pytest.mark.parametrize("make", ["service sender", "control worker", "trial worker"])
def test_every_celery_app_accepts_json_only_and_refuses_a_pickle(make: str) -> None:
    settings = Settings(broker_url="redis://127.0.0.1:6379/15")
    app = {
        "service sender": lambda: create_sender(settings),
        "control worker": lambda: create_control_celery(settings),
        "trial worker": create_celery,
    }[make]()
    assert app.conf.task_serializer == "json" and list(app.conf.accept_content) == ["json"]
    content_type, encoding, body = dumps({"study_id": 1}, serializer="pickle")
    with pytest.raises(ContentDisallowed):
        loads(body, content_type, encoding, accept=app.conf.accept_content)
    assert pickle.loads(body) == {"study_id": 1}  # it was a real pickle, refused unread
