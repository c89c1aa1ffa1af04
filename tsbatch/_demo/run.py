"""The demo: the Parquet job over the bundled data, scored against its labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds

from tsbatch import _loop
from tsbatch._config import ClientConfig
from tsbatch._demo.scoring import Evaluation, evaluate
from tsbatch._job import Job, JobSettings, JobSummary
from tsbatch._policies import Auth
from tsbatch._serve.local import LocalServer


@dataclass(frozen=True)
class DemoResult:
    """The job's summary, the scores on the test split and on every row, and a few examples."""

    summary: JobSummary
    test: Evaluation
    everything: Evaluation
    examples: list[tuple[str, str, str]]  # (predicted, label, id)


def run_demo_job(server: LocalServer, data: Path, output: Path) -> DemoResult:
    """Classify ``data`` into ``output`` through ``server`` and score the predictions."""
    config = ClientConfig(
        url=server.inference_url,
        management_url=server.management_url,
        model=server.model_name,
        auth=Auth(key_file=server.key_file),
    )
    settings = JobSettings(
        input=str(data), output=output, id_column="id", keep_columns=("label", "split"), overwrite=True
    )
    summary = _loop.run(Job(settings, config).run())
    table = ds.dataset(output, format="parquet").to_table(columns=["id", "label", "split", "pred_label"])
    rows = table.to_pylist()
    ok = [r for r in rows if r["pred_label"] is not None]
    test = [r for r in ok if r["split"] == "test"]
    return DemoResult(
        summary=summary,
        test=evaluate([r["label"] for r in test], [r["pred_label"] for r in test]),
        everything=evaluate([r["label"] for r in ok], [r["pred_label"] for r in ok]),
        examples=[(r["pred_label"], r["label"], r["id"]) for r in test[:5]],
    )
