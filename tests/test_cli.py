"""The ``tsbatch`` command line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_ports
from tsbatch._cli import main


def test_status_without_a_server_says_so_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psutil")  # needs the serve extra
    assert main(["serve", "status", "--run-dir", str(tmp_path)]) == 1
    assert f"no TorchServe running from {tmp_path}" in capsys.readouterr().out


def test_stop_without_a_server_is_harmless(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psutil")  # needs the serve extra
    assert main(["serve", "stop", "--run-dir", str(tmp_path)]) == 0
    assert "no TorchServe running" in capsys.readouterr().out


def test_start_help_explains_every_option_with_its_default() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tsbatch", "serve", "start", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    help_text = " ".join(done.stdout.split())
    for option, default in [
        ("--inference-port", "8080"),
        ("--management-port", "8081"),
        ("--metrics-port", "8082"),
        ("--model-batch-size", "32"),
        ("--max-batch-delay-ms", "10"),
        ("--job-queue-size", "100"),
        ("--model-workers", "1"),
        ("--run-dir", ".tsbatch/server"),
    ]:
        assert option in help_text
        assert f"(default: {default})" in help_text
    assert "--no-token-auth" in help_text
    # One meaning per flag: --batch-size and --workers are classify's.
    assert "--batch-size" not in help_text.replace("--model-batch-size", "")
    assert "--workers" not in help_text.replace("--model-workers", "")


@pytest.mark.parametrize(
    ("old", "new"), [("--workers", "--model-workers"), ("--batch-size", "--model-batch-size")]
)
def test_a_renamed_serve_flag_names_its_new_name(
    old: str, new: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        # A missing archive: were the flag taken, the command would stop before starting a server.
        main(
            ["serve", "start", f"--run-dir={tmp_path}", f"--model-archive={tmp_path / 'none.mar'}", old, "2"]
        )
    assert exited.value.code == 2
    assert f"error: {old} is now {new} here" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["classify", "in.parquet", "out", "--rows-per-prat=5"], "--rows-per-part"),
        (["classify", "in.parquet", "out", "--batchsize", "8"], "--batch-size"),
        (["models", "--jsn"], "--json"),
        (["serve", "status", "--rundir=x"], "--run-dir"),
    ],
)
def test_an_unknown_flag_suggests_the_nearest_one_the_command_has(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"did you mean {suggestion}?")


def test_retry_failed_help_lists_only_what_it_takes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tsbatch", "retry-failed", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "dask" not in done.stdout.lower() and "--engine" not in done.stdout
    assert "--json" in done.stdout


def test_serve_status_reports_json_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psutil")  # needs the serve extra
    assert main(["serve", "status", "--run-dir", str(tmp_path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) is None


@pytest.mark.integration
def test_a_busy_port_is_a_one_line_error_with_exit_2(
    demo_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    management, metrics = free_ports(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        code = main(
            [
                "serve",
                "start",
                f"--run-dir={tmp_path}",
                f"--inference-port={busy}",
                f"--management-port={management}",
                f"--metrics-port={metrics}",
                f"--model-archive={demo_archive}",
            ]
        )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        f"tsbatch: error: inference port {busy} on 127.0.0.1 is in use: "
        "stop what holds it or pass --inference-port"
    )


def test_classify_help_explains_the_job_options_with_their_defaults() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tsbatch", "classify", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    help_text = " ".join(done.stdout.split())
    for option, default in [
        ("--column", "text"),
        ("--rows-per-part", "10000"),
        ("--mode", "auto"),
        ("--metrics-address", "127.0.0.1"),
        ("--job-name", "tsbatch"),
        ("--stop-timeout", "30.0"),
    ]:
        assert option in help_text
        assert f"(default: {default})" in help_text
    for option in ("--id-column", "--keep-columns", "--pushgateway", "--overwrite", "--key-file", "--url"):
        assert option in help_text
