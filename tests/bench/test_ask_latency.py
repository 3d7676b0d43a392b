"""The ask-latency bench's smoke run: it times ask(1) and the front the service stores."""

from __future__ import annotations

import json


def test_a_quick_run_reports_the_ask_and_the_front(tmp_path, capsys):
    from bench.ask_latency import main

    main(["--quick", "--sizes", "40", "--out", str(tmp_path)])
    (record,) = tmp_path.glob("ask_latency_*.json")
    (row,) = json.loads(record.read_text())["rows"]
    assert row["n_observations"] == 40 and row["n_asks"] == 5
    assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]
    assert 0 < row["front_p50_ms"] <= row["front_p95_ms"]
    assert "front() p95 ms" in capsys.readouterr().out
