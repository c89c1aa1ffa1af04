"""The monitoring assets are real: promtool checks them, their metrics exist, Prometheus answers them."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.conftest import free_ports
from tests.job_helpers import parts_done, port_open, server_env
from tests.waiting import wait_for
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._job import JobMetrics
from tsbatch._metrics import client_metrics

if TYPE_CHECKING:
    from tsbatch._serve import local

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
DASHBOARD = MONITORING / "torchserve_dashboard.json"
ALERTS = MONITORING / "alerts.yml"
METRIC = re.compile(r"\b((?:torchserve|tsbatch|ts)_[a-z_]+)\b")
MACROS = {"$__rate_interval": "1m", "$__range": "1h"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=MONITORING, timeout=120)


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def with_macros(expr: str) -> str:
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return expr


def test_alert_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_fire_and_stay_quiet_as_their_unit_tests_say() -> None:
    done = promtool("test", "rules", "tests/alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_scrape_config_passes_promtool_check() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    pushgateway = next(job for job in config["scrape_configs"] if job["job_name"] == "pushgateway")
    assert pushgateway["honor_labels"] is True


def test_every_alert_has_a_summary_a_description_and_a_runbook() -> None:
    guide = (MONITORING.parent / "PRODUCTION_DEPLOYMENT.md").read_text().lower()
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            annotations = rule["annotations"]
            assert annotations["summary"] and annotations["description"], rule["alert"]
            anchor = annotations["runbook_url"].split("#")[1]
            assert anchor == rule["alert"].lower()
            assert f"### {rule['alert'].lower()}" in guide, f"no runbook section for {rule['alert']}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": with_macros(expr)}
                    for i, (_, expr) in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_uses_a_datasource_variable_and_covers_the_required_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in (
        "connection",
        "status",
        "p95",
        "breaker state",
        "trips",
        "retries",
        "error rate",
        "rows per second",
        "rows failed",
        "queue latency",
        "inference latency",
    ):
        assert topic in titles, topic


def tsbatch_metric_names() -> set[str]:
    registry = CollectorRegistry()
    metrics = client_metrics(registry)
    metrics.requests.labels("predict", "200").inc()
    metrics.duration.labels("predict").observe(0.1)
    metrics.retries.labels("predict", "503").inc()
    job = JobMetrics()
    job.rows.labels("ok").inc()
    job.mark_success()
    return {
        sample.name
        for reg in (registry, job.registry)
        for family in reg.collect()
        for sample in family.samples
    }


@pytest.mark.integration
def test_every_metric_used_is_one_tsbatch_or_torchserve_exports(torchserve: local.LocalServer) -> None:
    # TorchServe creates its inference series with the first prediction.
    predict = urllib.request.Request(
        f"{torchserve.inference_url}/predictions/demo",
        data=b"a chess engine",
        headers={"Authorization": f"Bearer {torchserve.inference_token()}", "Content-Type": "text/plain"},
    )
    urllib.request.urlopen(predict, timeout=30).close()
    with urllib.request.urlopen(f"{torchserve.metrics_url}/metrics", timeout=10) as reply:
        torchserve_names = {
            line.split("{")[0].split(" ")[0]
            for line in reply.read().decode().splitlines()
            if line and not line.startswith("#")
        }
    known = tsbatch_metric_names() | torchserve_names
    used = {name for _, expr in dashboard_queries() + alert_expressions() for name in METRIC.findall(expr)}
    assert used, "no metric names found"
    assert used - known == set()


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": with_macros(expr)})
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.integration
@pytest.mark.slow
def test_a_real_prometheus_scrapes_a_job_and_every_dashboard_query_returns_data(
    torchserve: local.LocalServer, tmp_path: Path
) -> None:
    job_port, gateway_port, prometheus_port = free_ports(3)
    source = tmp_path / "input.parquet"
    pd.read_parquet(DEFAULT_DATA, filters=[("split", "=", "test")]).to_parquet(source, index=False)
    gateway = subprocess.Popen(
        [
            shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway",
            f"--web.listen-address=127.0.0.1:{gateway_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics_target = torchserve.metrics_url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "tsbatch", "static_configs": [{"targets": [f"127.0.0.1:{job_port}"]}]},
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}],
            },
            {"job_name": "torchserve", "static_configs": [{"targets": [metrics_target]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus_process = subprocess.Popen(
        [
            shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    output = tmp_path / "out"
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tsbatch",
            "classify",
            str(source),
            str(output),
            "--id-column=id",
            "--rows-per-part=50",
            "--mode=rows",
            "--concurrency=2",
            f"--metrics-port={job_port}",
            f"--pushgateway=http://127.0.0.1:{gateway_port}",
            "--job-name=nightly",
        ],
        env=server_env(torchserve),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    answered: dict[str, bool] = {title + expr: False for title, expr in dashboard_queries()}
    try:
        wait_for(
            lambda: port_open(prometheus_port) and port_open(gateway_port),
            "Prometheus and the Pushgateway to listen",
            timeout=60,
        )
        wait_for(lambda: parts_done(output) >= 2, "two parts recorded", timeout=120)

        def everything_answered() -> bool:
            for title, expr in dashboard_queries():
                if not answered[title + expr] and query(prometheus, expr):
                    answered[title + expr] = True
            return all(answered.values())

        # While the job runs, its own series are scraped; once it ends, the Pushgateway's are.
        try:
            wait_for(everything_answered, "every dashboard query to return data", timeout=30)
        except AssertionError:
            job.wait(timeout=300)
            wait_for(everything_answered, "every dashboard query to return data", timeout=60)
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGTERM)
        job.communicate(timeout=120)
        for process in (prometheus_process, gateway):
            process.terminate()
            process.wait(timeout=30)
    assert [key for key, ok in answered.items() if not ok] == []
