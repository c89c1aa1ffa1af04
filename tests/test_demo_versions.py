"""The demo model's versions 1.0 and 2.0, served side by side under the one name ``demo``.

The integration tests use the session's TorchServe, which serves both.
"""

from __future__ import annotations

import json
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import SESSION_VERSIONS
from tsbatch import ClientConfig, LocalServerError
from tsbatch._cli import build_parser, main
from tsbatch._cli._serve import _settings
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._serve.models import config_text
from tsbatch._serve.settings import ServeSettings

if TYPE_CHECKING:
    from tsbatch._demo.cache import DemoArchive
    from tsbatch._serve.local import LocalServer


def test_the_config_loads_every_version_the_default_first() -> None:
    store = Path("/srv/model-store")
    settings = ServeSettings(demo_versions=("1.0", "2.0"), batch_size=4)
    config = dict(
        line.split("=", 1)
        for line in config_text(
            settings, {"1.0": store / "demo.mar", "2.0": store / "demo-2.0.mar"}
        ).splitlines()
    )
    # TorchServe makes the first version it loads the default one.
    assert config["load_models"] == "demo.mar,demo-2.0.mar"
    assert config["model_store"] == str(store)
    versions = json.loads(config["models"])["demo"]
    assert list(versions) == ["1.0", "2.0"]
    assert [v["defaultVersion"] for v in versions.values()] == [True, False]
    assert [v["marName"] for v in versions.values()] == ["demo.mar", "demo-2.0.mar"]
    assert all(v["batchSize"] == 4 for v in versions.values())


@pytest.mark.parametrize(
    ("versions", "message"),
    [
        (
            ("1.0", "3.0"),
            r"demo_versions must name versions of the demo model \(1\.0, 2\.0\), got \['1\.0', '3\.0'\]",
        ),
        ((), r"demo_versions must name versions of the demo model \(1\.0, 2\.0\), got \[\]"),
        (("2.0", "2.0"), "demo_versions names a version twice"),
    ],
)
def test_demo_versions_are_checked(versions: tuple[str, ...], message: str) -> None:
    with pytest.raises(LocalServerError, match=message):
        ServeSettings(demo_versions=versions)


def test_one_version_may_be_given_as_a_string_and_several_as_a_list() -> None:
    assert ServeSettings(demo_versions="2.0").demo_versions == ("2.0",)  # type: ignore[arg-type]
    assert ServeSettings(demo_versions=["1.0", "2.0"]).demo_versions == ("1.0", "2.0")  # type: ignore[arg-type]


def test_demo_versions_do_not_apply_to_a_model_archive_of_your_own(tmp_path: Path) -> None:
    with pytest.raises(LocalServerError, match="demo_versions is for the demo model"):
        ServeSettings(model_archive=tmp_path / "mine.mar", demo_versions=("1.0", "2.0"))


def test_serve_start_takes_the_versions_to_serve() -> None:
    args = build_parser().parse_args(["serve", "start", "--demo-versions", "1.0", "2.0"])
    assert _settings(args).demo_versions == ("1.0", "2.0")
    assert _settings(build_parser().parse_args(["serve", "start"])).demo_versions == ("1.0",)


def test_serve_start_refuses_an_unknown_version_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "start", f"--run-dir={tmp_path}", "--demo-versions", "1.0", "3.0"])
    assert exited.value.code == 2
    assert "invalid choice: '3.0' (choose from '1.0', '2.0')" in capsys.readouterr().err


# -- against the session's TorchServe -----------------------------------------------------


def _management(server: LocalServer, path: str) -> Any:
    request = urllib.request.Request(
        f"{server.management_url}{path}", headers={"Authorization": f"Bearer {server.management_token()}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


@pytest.fixture(scope="module")
def test_split() -> pd.DataFrame:
    return pq.read_table(
        DEFAULT_DATA, filters=[("split", "=", "test")], columns=["text", "label"]
    ).to_pandas()


@pytest.fixture(scope="module")
def answers(torchserve: LocalServer, test_split: pd.DataFrame) -> dict[str | None, pd.Series]:
    """The served labels of the test split: by the default version (``None``), by 1.0 and by 2.0."""
    from tests.job_helpers import server_config

    config: ClientConfig = server_config(torchserve)
    labels = {}
    for version in (None, "1.0", "2.0"):
        result = test_split.ts.classify(
            "text", version=version, mode="list", config=config, registry=CollectorRegistry(), progress=False
        )
        assert (result["ts_status"] == "ok").all()
        labels[version] = result["pred_label"]
    return labels


@pytest.mark.integration
def test_the_session_server_serves_both_versions(torchserve: LocalServer) -> None:
    assert torchserve.versions == SESSION_VERSIONS == ("1.0", "2.0")


@pytest.mark.integration
def test_1_0_is_the_default_version(torchserve: LocalServer) -> None:
    (described,) = _management(torchserve, "/models/demo")
    assert described["modelVersion"] == "1.0"


@pytest.mark.integration
def test_both_versions_are_loaded_each_with_a_ready_worker(torchserve: LocalServer) -> None:
    loaded = _management(torchserve, "/models/demo/all")
    assert [(m["modelVersion"], m["modelUrl"]) for m in loaded] == [
        ("1.0", "demo.mar"),
        ("2.0", "demo-2.0.mar"),
    ]
    assert all(any(w["status"] == "READY" for w in m["workers"]) for m in loaded)
    assert _management(torchserve, "/models")["models"] == [{"modelName": "demo", "modelUrl": "demo.mar"}]


@pytest.mark.integration
def test_no_version_asks_the_default_one(answers: dict[str | None, pd.Series]) -> None:
    assert answers[None].equals(answers["1.0"])


@pytest.mark.integration
def test_2_0_answers_as_its_archive_does_in_process(
    answers: dict[str | None, pd.Series],
    test_split: pd.DataFrame,
    demo_builds: dict[str, DemoArchive],
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")  # needs the serve extra
    from tsbatch._demo.handler import DemoTextHandler

    with zipfile.ZipFile(demo_builds["2.0"].path) as archive:
        archive.extract("model.pt", tmp_path)
    handler = DemoTextHandler()
    handler.load(str(tmp_path / "model.pt"))
    expected = [p["label"] for p in handler.predict(test_split["text"].tolist())]
    assert answers["2.0"].tolist() == expected


@pytest.mark.integration
def test_the_versions_disagree_on_some_test_rows_and_agree_on_most(
    answers: dict[str | None, pd.Series], test_split: pd.DataFrame
) -> None:
    differ = int((answers["1.0"] != answers["2.0"]).sum())
    # Measured: 274 of the 1,535 rows (17.9%).
    assert 0.10 * len(test_split) <= differ <= 0.30 * len(test_split)
    accuracy = {v: float((answers[v] == test_split["label"]).mean()) for v in ("1.0", "2.0")}
    assert accuracy == pytest.approx({"1.0": 0.6899, "2.0": 0.6866}, abs=5e-5)
