"""Parquet jobs against a scripted server: exit codes for faults a real TorchServe cannot be made
to produce on cue, and edge cases that need no real model."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from tests.conftest import free_ports
from tests.scripted_server import ServerThread
from tests.waiting import wait_for
from tsbatch import ClientConfig
from tsbatch._cli import EXIT_CANNOT_WRITE, EXIT_OUTAGE, main
from tsbatch._errors import JobInputError
from tsbatch._job import Job, JobSettings
from tsbatch._options import ClassifyOptions
from tsbatch._outcomes import Progress


async def labels(request: web.Request) -> web.StreamResponse:
    if not request.path.startswith("/predictions"):
        return web.Response(status=404)
    body = await request.read()
    if request.content_type == "application/json":
        return web.json_response([{"label": "x", "score": 0.5} for _ in json.loads(body)["instances"]])
    return web.json_response({"label": "x", "score": 0.5})


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.parquet"
    frame = pd.DataFrame({"id": [f"row-{i}" for i in range(600)], "text": [f"text {i}" for i in range(600)]})
    frame.to_parquet(path, index=False)
    return path


def run_job(
    input_file: Path, output: Path, url: str, *options: str, file_size_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit_file_size() -> None:  # a full disk, as far as the job can tell: writes fail with EFBIG
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = {"TORCHSERVE_URL": url, "TORCHSERVE_MANAGEMENT_URL": url, "TSBATCH_PROGRESS": "0"}
    command = [
        sys.executable,
        "-m",
        "tsbatch",
        "classify",
        str(input_file),
        str(output),
        "--id-column=id",
    ]
    return subprocess.run(
        [*command, *options],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )


@contextlib.contextmanager
def running_job(input_file: Path, output: Path, url: str, *options: str) -> Iterator[subprocess.Popen[str]]:
    """The job in a process of its own, killed (and its pipes closed) when the block ends."""
    env = {**os.environ, "TORCHSERVE_URL": url, "TORCHSERVE_MANAGEMENT_URL": url, "TSBATCH_PROGRESS": "0"}
    command = [
        sys.executable,
        "-m",
        "tsbatch",
        "classify",
        str(input_file),
        str(output),
        "--id-column=id",
    ]
    with subprocess.Popen(
        [*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as job:
        try:
            yield job
        finally:
            job.kill()


def test_an_output_that_cannot_be_written_exits_74_with_one_line_and_records_nothing_unwritten(
    input_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    with ServerThread([labels]) as server:
        done = run_job(input_file, output, server.url, "--rows-per-part=200", file_size_limit=8192)
    assert done.returncode == EXIT_CANNOT_WRITE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"tsbatch: error: cannot write {output / 'part-00000.parquet'}: File too large"
    )
    assert "Traceback" not in done.stderr
    assert json.loads((output / "_manifest.json").read_text())["parts"] == {}
    assert not list(output.glob("part-*")) and not list(output.glob(".*.tmp"))


def test_a_server_that_never_answers_stops_the_job_with_exit_75_once_the_budget_is_spent(
    input_file: Path, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    done = run_job(input_file, tmp_path / "out", url, "--max-outage=1")
    assert done.returncode == EXIT_OUTAGE, done.stderr
    assert f"cannot reach the server at {url} for longer than max_outage (1 s)" in done.stderr
    assert "resume with:" in done.stderr
    assert not list((tmp_path / "out").glob("part-*"))  # found before the first part


def test_an_empty_input_gives_an_empty_output_with_the_full_schema(tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"id": pd.Series([], dtype="string"), "text": pd.Series([], dtype="string")}).to_parquet(
        empty
    )
    output = tmp_path / "out"
    with ServerThread([labels]) as server:
        done = run_job(empty, output, server.url)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(output)  # the dataset: every part
    assert table.num_rows == 0
    assert {"id", "pred_label", "pred_score", "ts_status", "ts_error", "ts_attempts"} <= set(
        table.column_names
    )
    failed = pq.read_table(output / "_failed.parquet")
    assert failed.num_rows == 0 and failed.schema.equals(table.schema, check_metadata=False)


def test_the_same_job_object_runs_twice(input_file: Path, tmp_path: Path) -> None:
    with ServerThread([labels]) as server:
        config = ClientConfig(url=server.url, management_url=server.url)
        settings = JobSettings(input=str(input_file), output=tmp_path / "out", id_column="id", overwrite=True)
        job = Job(settings, config)
        first = asyncio.run(job.run())
        second = asyncio.run(job.run())
    assert first.ok == second.ok == 600
    assert job.metrics.registry.get_sample_value("tsbatch_job_last_success_timestamp_seconds") is not None


def test_a_job_killed_at_chosen_points_resumes_with_every_row_once(tmp_path: Path) -> None:
    rows = 300  # three parts of 100
    source = tmp_path / "input.parquet"
    ids = [f"row-{i}" for i in range(rows)]
    pd.DataFrame({"id": ids, "text": [f"text {i}" for i in range(rows)]}).to_parquet(source, index=False)
    output = tmp_path / "out"
    held: set[str] = set()
    received_held: list[str] = []

    async def answer_or_hold(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/predictions"):
            text = (await request.read()).decode()
            if text in held:
                received_held.append(text)
                await server.gate.wait()  # answered only when the server closes: the job is killed first
            return web.json_response({"label": "x", "score": 0.5})
        return web.Response(status=404)

    def recorded() -> set[str]:
        return set(json.loads((output / "_manifest.json").read_text())["parts"])

    with ServerThread([answer_or_hold]) as server:
        options = ("--rows-per-part=100", "--mode=rows", "--concurrency=4")

        def kill_while_part_is_sent(part: int) -> None:
            held.clear()
            held.update(f"text {i}" for i in range(100 * part, 100 * part + 100))
            received_held.clear()
            earlier = {f"part-{i:05d}.parquet" for i in range(part)}
            with running_job(source, output, server.url, *options) as job:
                # Parts are pipelined: the part's rows are sent while the one before finishes.
                wait_for(
                    lambda: (
                        (
                            bool(received_held)
                            and (output / "_manifest.json").exists()
                            and recorded() >= earlier
                        )
                        or job.poll() is not None
                    ),
                    f"part {part} to be sent and the parts before it recorded",
                )
                assert job.poll() is None, job.communicate()[1]
                job.kill()

        # Killed while part 1 is being classified: part 0 is recorded, part 1 not written.
        kill_while_part_is_sent(1)
        assert recorded() == {"part-00000.parquet"}
        assert not (output / "part-00001.parquet").exists()
        # Killed while part 2 is being classified: part 1 recorded, part 2 not written.
        kill_while_part_is_sent(2)
        assert recorded() == {"part-00000.parquet", "part-00001.parquet"}
        # Killed while part 2 was being written: a half-written temporary file, or a whole
        # file renamed into place before the manifest recorded it (here: wrong rows in it).
        (output / ".part-00002.parquet.0123456789ab.tmp").write_bytes(b"PAR1 half written")
        shutil.copy(output / "part-00001.parquet", output / "part-00002.parquet")
        held.clear()
        done = run_job(source, output, server.url, *options)
    assert done.returncode == 0, done.stderr
    assert recorded() == {f"part-{i:05d}.parquet" for i in range(3)}
    assert not list(output.glob(".*.tmp"))
    table = pq.read_table(output).to_pandas()
    assert sorted(table["id"]) == sorted(ids) and table["id"].is_unique
    assert sorted(pq.read_table(output / "part-00002.parquet")["id"].to_pylist()) == sorted(ids[200:])


def test_the_progress_counts_the_whole_job_not_the_current_part(input_file: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with ServerThread([labels]) as server:
        config = ClientConfig(url=server.url, management_url=server.url)
        settings = JobSettings(
            input=str(input_file), output=tmp_path / "out", id_column="id", rows_per_part=100
        )
        job = Job(settings, config, progress=Progress(on_update=lambda p, _: seen.append((p.total, p.done))))
        asyncio.run(job.run())
    assert {total for total, _ in seen} == {600}
    assert seen[-1] == (600, 600)
    assert [done for _, done in seen] == sorted(done for _, done in seen)


def test_a_resume_with_other_settings_names_each_change_and_how_to_resume(
    input_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    with ServerThread([labels]) as server:
        config = ClientConfig(url=server.url, management_url=server.url)
        written = JobSettings(input=str(input_file), output=output, id_column="id", rows_per_part=100)
        asyncio.run(Job(written, config).run())
        resumed = asyncio.run(Job(written, config).run())  # the same settings: resumed, nothing to do
        assert (resumed.ok, resumed.rows_this_run, resumed.model) == (600, 0, "demo")
        other = dataclasses.replace(written, rows_per_part=200, keep_columns=("text",))
        with pytest.raises(JobInputError) as caught:
            Job(other, config).prepare()
    assert str(caught.value) == (
        f"OUTPUT {output} was written with other settings: keep_columns was [], now ['text']; "
        "rows_per_part was 100, now 200. To resume it, run with the settings it was written with "
        "(without --keep-columns, --rows-per-part 100); or pass --overwrite to start over"
    )


def test_classify_and_retry_failed_report_json_with_failures_by_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "input.parquet"
    pd.DataFrame({"text": ["a text", "", "another text", "   "]}).to_parquet(source, index=False)
    output = tmp_path / "out"
    with ServerThread([labels]) as server:
        for name, value in {"TORCHSERVE_URL": server.url, "TORCHSERVE_MANAGEMENT_URL": server.url}.items():
            monkeypatch.setenv(name, value)
        assert main(["classify", str(source), str(output), "--no-progress", "--json"]) == 1
        classified = json.loads(capsys.readouterr().out)
        assert classified == json.loads((output / "_summary.json").read_text())
        assert main(["retry-failed", str(output), "--no-progress", "--json"]) == 1
        retried = json.loads(capsys.readouterr().out)
    assert (classified["ok"], classified["failed"], classified["failed_by_kind"]) == (2, 2, {"bad_input": 2})
    assert (retried["failed"], retried["failed_by_kind"]) == (2, {"bad_input": 2})


def test_a_wrong_model_name_stops_the_job_before_its_first_part_listing_the_models(
    input_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    predictions = []

    async def server(request: web.Request) -> web.StreamResponse:
        if request.path == "/models":
            return web.json_response({"models": [{"modelName": "demo"}, {"modelName": "sentiment"}]})
        if request.path.startswith("/predictions/"):
            predictions.append(request.path)
        if request.path.startswith(("/models/", "/predictions/")):
            body = {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: dmeo"}
            return web.json_response(body, status=404)
        return web.json_response({"status": "Healthy"})

    output = tmp_path / "out"
    with ServerThread([server]) as scripted:
        for name, value in {
            "TORCHSERVE_URL": scripted.url,
            "TORCHSERVE_MANAGEMENT_URL": scripted.url,
        }.items():
            monkeypatch.setenv(name, value)
        code = main(["classify", str(input_file), str(output), "--model=dmeo", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"model 'dmeo' is not on the server at {scripted.url}; it has: demo, sentiment" in err
    assert predictions == [] and not output.exists()


def test_a_predict_job_whose_first_part_has_no_output_still_reads_as_one_table(tmp_path: Path) -> None:
    source = tmp_path / "input.parquet"
    pd.DataFrame({"id": range(300), "text": [f"text {i}" for i in range(300)]}).to_parquet(
        source, index=False
    )

    async def vectors(request: web.Request) -> web.StreamResponse:
        if not request.path.startswith("/predictions"):
            return web.Response(status=404)
        text = (await request.read()).decode()
        if int(text.split()[1]) < 100:  # every row of the first part is refused
            body = {"code": 400, "type": "BadRequestException", "message": "no vector for this one"}
            return web.json_response(body, status=400)
        return web.json_response([0.5, float(len(text))])

    with ServerThread([vectors]) as server:
        config = ClientConfig(url=server.url, management_url=server.url)
        settings = JobSettings(
            input=str(source),
            output=tmp_path / "out",
            id_column="id",
            rows_per_part=100,
            task="predict",
            classify=ClassifyOptions(mode="rows"),
        )
        summary = asyncio.run(Job(settings, config).run())
    assert (summary.ok, summary.failed) == (200, 100)
    table = ds.dataset(tmp_path / "out", format="parquet").to_table().to_pandas().set_index("id")
    assert table.loc[0, "pred_output"] is None and table.loc[0, "ts_status"] == "error"
    assert list(table.loc[150, "pred_output"]) == [0.5, float(len("text 150"))]
    first = pq.read_table(tmp_path / "out" / "part-00000.parquet")
    assert json.loads(first.schema.metadata[b"tsbatch"])["settings"]["task"] == "predict"
