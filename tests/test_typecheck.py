"""The type check is part of the test command: mypy over the packages pyproject.toml
names (``[tool.mypy] packages``), with its settings there (unused or code-less
``type: ignore`` comments are errors too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"mypy found errors:\n{result.stdout}{result.stderr}"
