"""Run reports of real runs against the served demo model: every figure checked against its sources."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("psutil")  # needs the serve extra
pytest.importorskip("torch")  # needs the serve extra
from prometheus_client import CollectorRegistry

import tsbatch
from tests.job_helpers import server_config, server_env
from tests.report_checks import check_report
from tsbatch import ClientConfig, batch_metrics
from tsbatch._cli import main
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._demo.handler import MAX_TEXT_CHARS
from tsbatch._serve import local

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def config(torchserve: local.LocalServer) -> ClientConfig:
    return server_config(torchserve)


def golden_with_bad_rows() -> pd.DataFrame:
    """The test split with rows no retry can fix (too long for the handler, empty, a list) and a
    missing one."""
    frame = pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")], columns=["id", "text"]).to_pandas()
    frame["text"] = frame["text"].astype(object)
    frame.loc[[7, 300], "text"] = "x " * (MAX_TEXT_CHARS // 2 + 10)
    frame.loc[40, "text"] = ""
    frame.at[41, "text"] = ["not", "text"]
    frame.loc[900, "text"] = None
    return frame


def test_a_report_of_a_real_run_gives_the_figures_of_its_batches_and_rows(config: ClientConfig) -> None:
    frame = golden_with_bad_rows()
    result = frame.ts.classify(
        "text",
        config=config,
        registry=CollectorRegistry(),
        mode="list",
        batch_size=32,
        max_text_length=10 * MAX_TEXT_CHARS,
        progress=False,
    )
    summary = result.ts.report()
    check_report(summary, batch_metrics(result), result, pd.Series(result.index, index=result.index))
    assert (summary.ok, summary.error, summary.skipped) == (len(frame) - 5, 4, 1)
    assert summary.errors_by_kind == {"bad_input": 4}
    assert summary.batches >= len(frame) // 32 and summary.latency_p50_ms is not None
    assert summary.latency_p50_ms <= summary.latency_p95_ms <= summary.latency_p99_ms  # type: ignore[operator]
    assert len(summary.labels) >= 5 and sum(summary.labels.values()) == summary.ok
    assert summary.plot().axes


def test_a_real_job_summary_and_its_report_agree(
    torchserve: local.LocalServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "golden.parquet"
    golden = golden_with_bad_rows()
    golden.at[41, "text"] = "   "  # Parquet keeps no list in a text column
    golden.to_parquet(source, index=False)
    output = tmp_path / "out"
    for name, value in server_env(torchserve).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MAX_TEXT_LENGTH", str(10 * MAX_TEXT_CHARS))  # the handler refuses the long rows
    args = ["classify", str(source), str(output), "--id-column=id", "--keep-columns=text"]
    assert main([*args, "--rows-per-part=500", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    rows = pd.concat([pd.read_parquet(p) for p in sorted(output.glob("part-*.parquet"))], ignore_index=True)
    batches = pq.read_table(output / "_batches.parquet").to_pandas()
    report = tsbatch.report(output)
    check_report(report, batches, rows, rows["id"])
    for name in ("batches", "requests", "retries", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        assert summary[name] == getattr(report, name), name
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (report.ok, report.error, report.skipped)
    assert report.error_examples["bad_input"]["row"] == rows.loc[rows["ts_status"] == "error", "id"].iloc[0]
