"""Run reports (``result.ts.report()``, ``tsbatch report``) against a scripted server with faults."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

import tsbatch
from tests.report_checks import check_report
from tests.scripted_server import ServerThread
from tsbatch import ClientConfig, InputValidationError, batch_metrics
from tsbatch._cli import main
from tsbatch._errors import JobInputError

TEXTS = [
    *(f"text number {i}" for i in range(24)),
    *(f"flaky {i}" for i in range(6)),
    "bad <script>alert(1)</script>",
    *(f"bad {i}" for i in range(3)),
    "boom 1",
    "boom 2",
    "",
    "   ",
    None,
]


class Server:
    """Labels a text by its first word; ``bad`` texts are refused (400), ``boom`` ones fail the
    handler (500) every time, ``flaky`` ones are answered 503 (queue full) the first time."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if not request.path.startswith("/predictions"):
            return web.Response(status=404)
        text = (await request.read()).decode()
        if text.startswith("bad"):
            return web.json_response({"code": 400, "type": "BadRequest", "message": "no"}, status=400)
        if text.startswith("boom"):
            return web.json_response(
                {"code": 500, "type": "InternalServerException", "message": "boom"}, status=500
            )
        if text.startswith("flaky") and text not in self.seen:
            self.seen.add(text)
            body = {"code": 503, "type": "ServiceUnavailableException", "message": "queue full"}
            return web.json_response(body, status=503)
        return web.json_response({text.split()[0]: 0.8})


@pytest.fixture(scope="module")
def result() -> pd.DataFrame:
    tsbatch.set_testing(True)  # no real backoff sleeps
    try:
        with ServerThread([Server()]) as server:
            frame = pd.DataFrame({"text": TEXTS}, index=[f"r{i}" for i in range(len(TEXTS))])
            config = ClientConfig(url=server.url, management_url=server.url)
            return frame.ts.classify(
                "text",
                config=config,
                registry=CollectorRegistry(),
                mode="rows",
                concurrency=4,
                progress=False,
            )
    finally:
        tsbatch.set_testing(False)


class Page(HTMLParser):
    """The text and the image sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.images: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def test_a_report_gives_the_figures_of_its_batches_and_rows(result: pd.DataFrame) -> None:
    summary = result.ts.report()
    check_report(summary, batch_metrics(result), result, pd.Series(result.index, index=result.index))
    # The faults made what the report must show: retries, two kinds of error, a skipped row.
    assert summary.retries >= 6 and summary.skipped == 1
    assert set(summary.errors_by_kind) == {"bad_input", "server"}
    assert summary.interrupted == 0 and summary.breaker_openings == 0
    assert summary.seconds == round(tsbatch.run_report(result).seconds or 0.0, 3)
    assert summary == tsbatch.report(result)


def test_the_text_form_names_every_figure(result: pd.DataFrame) -> None:
    summary = result.ts.report()
    text = str(summary)
    assert f"{summary.ok:,} ok, {summary.error:,} error, {summary.skipped:,} skipped" in text
    assert f"{summary.rows_per_second:,.1f} rows/s" in text
    for kind, rows in summary.errors_by_kind.items():
        assert f"error {kind}" in text and f"{rows:,} rows" in text
    assert f"p99 {summary.latency_p99_ms:,.1f} ms" in text


def test_the_html_shows_the_figures_escapes_texts_and_embeds_the_plots(result: pd.DataFrame) -> None:
    summary = result.ts.report()
    page = summary._repr_html_()
    found = parse(page)
    text = " ".join(found.text)
    assert f"{summary.ok:,} ok, {summary.error:,} error" in text
    assert f"{summary.retries:,}" in text
    for kind in summary.errors_by_kind:
        assert kind in text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    [image] = found.images
    assert image.startswith("data:image/png;base64,")
    assert base64.b64decode(image.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plots_build_without_a_display(result: pd.DataFrame) -> None:
    figure = result.ts.report().plot()
    titles = [ax.get_title() for ax in figure.axes]
    for wanted in (
        "rows/s over time",
        "latency by batch",
        "requests in flight",
        "errors and retries",
        "labels",
    ):
        assert any(wanted in title for title in titles), (wanted, titles)
    assert figure.canvas.get_width_height()[0] > 0
    assert figure._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # Jupyter shows it without pyplot


def test_a_frame_without_a_run_and_a_path_that_is_no_output_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputValidationError, match="no tsbatch run report"):
        pd.DataFrame({"text": ["a"]}).ts.report()
    with pytest.raises(JobInputError, match="no folder"):
        tsbatch.report(tmp_path / "missing")
    with pytest.raises(JobInputError, match=r"_manifest\.json"):
        tsbatch.report(tmp_path)


def run_job(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Path:
    source = tmp_path / "input.parquet"
    ids = [f"id-{i}" for i in range(len(TEXTS))]
    pd.DataFrame({"id": ids, "text": TEXTS}).to_parquet(source, index=False)
    output = tmp_path / "out"
    tsbatch.set_testing(True)
    try:
        with ServerThread([Server()]) as server:
            monkeypatch.setenv("TORCHSERVE_URL", server.url)
            monkeypatch.setenv("TORCHSERVE_MANAGEMENT_URL", server.url)
            args = ["classify", str(source), str(output), "--id-column=id", "--keep-columns=text"]
            assert main([*args, "--rows-per-part=16", "--mode=rows", "--no-progress"]) == 1
    finally:
        tsbatch.set_testing(False)
    capsys.readouterr()
    return output


def test_a_job_output_gives_the_figures_of_its_parts_and_batches_and_its_summary_carries_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = run_job(tmp_path, capsys, monkeypatch)
    assert main(["report", str(output), "--json"]) == 0
    found: dict[str, Any] = json.loads(capsys.readouterr().out)
    rows = pd.concat([pd.read_parquet(p) for p in sorted(output.glob("part-*.parquet"))], ignore_index=True)
    batches = pq.read_table(output / "_batches.parquet").to_pandas()
    assert batches["part"].nunique() == 3
    check_report(tsbatch.report(output), batches, rows, rows["id"])
    assert found == json.loads(json.dumps(tsbatch.report(output).to_dict()))
    summary = json.loads((output / "_summary.json").read_text())
    for name in ("batches", "requests", "retries", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        assert summary[name] == found[name], name
    assert summary["failed_by_kind"] == found["errors_by_kind"]
    assert (summary["breaker_openings"], summary["paused_s"]) == (0, 0.0)


def test_the_report_command_prints_text_and_writes_a_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = run_job(tmp_path, capsys, monkeypatch)
    page = tmp_path / "report.html"
    assert main(["report", str(output), "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    assert str(tsbatch.report(output)) in printed and f"page written to {page}" in printed
    found = parse(page.read_text())
    assert "tsbatch run report" in " ".join(found.text) and len(found.images) == 1


def test_a_written_page_renders_in_a_real_browser(result: pd.DataFrame, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip(
            "Debian's chromium is not installed (scripts/test installs it): no browser to render with"
        )
    page = result.ts.report().to_html(tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1200,1100",  # the page fills most of the window
            page.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    not_white = (pixels < 0.95).any(axis=-1).mean()
    assert pixels.std() > 0.05 and not_white > 0.05, (pixels.std(), not_white)


def test_a_job_retried_in_place_numbers_the_new_batches_after_the_old_and_its_report_adds_them_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = run_job(tmp_path, capsys, monkeypatch)
    before = pq.read_table(output / "_batches.parquet").to_pandas()
    tsbatch.set_testing(True)
    try:
        with ServerThread([Server()]) as server:
            monkeypatch.setenv("TORCHSERVE_URL", server.url)
            monkeypatch.setenv("TORCHSERVE_MANAGEMENT_URL", server.url)
            assert main(["retry-failed", str(output), "--no-progress"]) == 1  # bad and boom rows fail again
    finally:
        tsbatch.set_testing(False)
    after = pq.read_table(output / "_batches.parquet").to_pandas()
    assert len(after) > len(before) and not after.duplicated(["part", "batch_id"]).any()
    parts = [pd.read_parquet(p).assign(part=i) for i, p in enumerate(sorted(output.glob("part-*.parquet")))]
    rows = pd.concat(parts, ignore_index=True)
    retried = rows[rows["ts_status"] == "error"]
    first_run_last_id = retried["part"].map(before.groupby("part")["batch_id"].max())
    assert len(retried) and (retried["ts_batch_id"] > first_run_last_id).all()
    check_report(tsbatch.report(output), after, rows, rows["id"])
