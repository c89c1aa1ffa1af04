"""``tsbatch.compare`` and ``tsbatch compare`` end to end: the golden test split through demo 1.0
and demo 2.0, both served by the session's TorchServe."""

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
from tsbatch import ClientConfig
from tsbatch._cli import main
from tsbatch._demo.archive import DEFAULT_DATA
from tsbatch._serve import local

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def golden() -> pd.DataFrame:
    return pq.read_table(DEFAULT_DATA, filters=[("split", "=", "test")]).to_pandas()


@pytest.fixture(scope="module")
def config(torchserve: local.LocalServer) -> ClientConfig:
    return server_config(torchserve)


def classified(golden: pd.DataFrame, config: ClientConfig, version: str) -> pd.DataFrame:
    return golden.ts.classify(
        "text", config=config, version=version, registry=CollectorRegistry(), progress=False
    )


def test_comparing_two_served_versions_gives_the_figures_of_their_predictions(
    golden: pd.DataFrame, config: ClientConfig
) -> None:
    baseline, candidate = classified(golden, config, "1.0"), classified(golden, config, "2.0")
    report = tsbatch.compare(baseline, candidate, truth="label")
    before, after = baseline["pred_label"], candidate["pred_label"]
    truth = golden["label"]
    assert report.matched == report.compared == len(golden)
    assert report.agreement == pytest.approx(float((before == after).mean()))
    assert set(report.changed_rows["id"]) == set(golden.loc[before != after, "id"])
    assert report.baseline is not None and report.candidate is not None
    assert report.baseline.accuracy == pytest.approx(float((before == truth).mean()))
    assert report.candidate.accuracy == pytest.approx(float((after == truth).mean()))
    assert abs(report.baseline.accuracy - 0.6899) <= 0.0005  # the recorded figure of demo 1.0
    flips = pd.crosstab(before.astype(str), after.astype(str))
    assert (report.flip_matrix.loc[flips.index, flips.columns].to_numpy() == flips.to_numpy()).all()
    assert 0.5 < report.agreement < 0.99  # two different models that mostly agree
    report.check(max_accuracy_drop=0.02, min_agreement=0.5)
    with pytest.raises(tsbatch.RegressionError, match=r"min_agreement=0\.99"):
        report.check(min_agreement=0.99)


def test_tsbatch_compare_on_two_job_outputs_exits_1_on_a_broken_threshold(
    torchserve: local.LocalServer,
    golden: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "golden.parquet"
    golden[["id", "text", "label"]].to_parquet(source, index=False)
    for name, value in server_env(torchserve).items():
        monkeypatch.setenv(name, value)
    outputs = {}
    for version in ("1.0", "2.0"):
        outputs[version] = tmp_path / f"out-{version}"
        args = [str(source), str(outputs[version]), "--id-column=id", "--keep-columns=label"]
        assert main(["classify", *args, "--model-version", version, "--no-progress"]) == 0
    capsys.readouterr()
    compare = ["compare", str(outputs["1.0"]), str(outputs["2.0"]), "--truth", "label", "--json"]
    assert main([*compare, "--fail-on", "accuracy_drop=0.02,agreement=0.5"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert abs(found["baseline"]["accuracy"] - 0.6899) <= 0.0005
    assert 0.5 < found["agreement"] < 0.99 and len(found["changed_rows"]) > 0
    assert main([*compare, "--fail-on", "agreement=0.99"]) == 1
    assert "agreement" in capsys.readouterr().err
