"""The public surface of ``search`` is exactly ``__all__``, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import search


def test_every_exported_name_resolves() -> None:
    for name in search.__all__:
        assert getattr(search, name) is not None, name


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        search.not_a_thing  # noqa: B018
    except AttributeError as exc:
        assert "not_a_thing" in str(exc)
    else:
        raise AssertionError("search.not_a_thing resolved")


def test_importing_search_does_not_load_torch() -> None:
    code = "import sys, search, search.space; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
