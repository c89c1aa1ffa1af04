"""The ``tsbatch`` command line."""

from __future__ import annotations

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
        ("--batch-size", "32"),
        ("--max-batch-delay-ms", "10"),
        ("--job-queue-size", "100"),
        ("--workers", "1"),
        ("--run-dir", ".tsbatch/server"),
    ]:
        assert option in help_text
        assert f"(default: {default})" in help_text
    assert "--no-token-auth" in help_text


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
