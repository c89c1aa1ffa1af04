"""``tsbatch retry-failed``: the failed rows of a finished OUTPUT sent again, merged in place."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tsbatch._client import TorchServeClient
from tsbatch._engine import classify_values
from tsbatch._errors import JobInputError, JobOutage, JobStopped, OutageError
from tsbatch._frame import result_frame
from tsbatch._job._files import write_table
from tsbatch._job._parts import (
    numbered_inputs,
    part_batch_metrics,
    part_name,
    status_counts,
    write_batch_metrics,
)
from tsbatch._job._runner import Job
from tsbatch._job._settings import JobSummary
from tsbatch._preflight import Checked, preflight
from tsbatch._report._figures import Totals


async def retry_failed(job: Job) -> JobSummary:
    """Send the failed rows of a finished OUTPUT again and merge the successes into their parts."""
    settings = job.settings
    files, manifest = job.prepare()
    if manifest.rows_done() != manifest.total_rows:
        raise JobInputError(
            f"the job writing {settings.output} has not finished: run classify again to resume it"
        )
    started = time.monotonic()
    model, version = settings.classify.model or job.config.model, settings.classify.version
    async with TorchServeClient(config=job.config, registry=job.metrics.registry) as client:
        job.progress.total = manifest.totals()["error"]
        checked: Checked | None = None  # the server is checked once, before the first failed part
        for index, batch in numbered_inputs(files, settings):
            name = part_name(index)
            if not manifest.parts[name]["error"]:
                continue
            path = settings.output / name
            table = pq.read_table(path)
            part = table.to_pandas()
            failed = part.index[part["ts_status"] == "error"]
            texts = batch.column(settings.column).take(pa.array(failed, type=pa.int64())).to_pylist()
            try:
                if checked is None:
                    checked = await preflight(client, settings.classify.model, settings.classify.version)
                result = await classify_values(
                    client,
                    texts,
                    settings.classify,
                    job.progress,
                    job.stop,
                    engine=job.engine_config,
                    checked=checked,
                    task=settings.task,
                )
            except OutageError as exc:
                raise JobOutage(job.outage_message(manifest, str(exc))) from None
            if job.stop.is_set():
                raise JobStopped(job.stopped_message(manifest))
            if result.outage is not None:
                raise JobOutage(job.outage_message(manifest, result.outage))
            model, version = result.model, result.version
            work = settings.output / "_work"
            earlier = sorted(work.glob(f"batches-{index:05d}*.parquet"))
            # The retried rows' batches are numbered after every earlier batch of the part.
            offset = 1 + max((_last_batch_id(f) for f in earlier), default=-1)
            redone = result_frame(part.loc[failed, []], result, prefix="pred_", include_scores=False)
            redone["ts_batch_id"] += offset
            metrics = part_batch_metrics(redone, index)
            metrics["batch_id"] += offset
            for column in redone.columns:
                part[column] = part[column].astype(redone[column].dtype)
                part.loc[failed, column] = redone[column]
            retried = pa.Table.from_pandas(part, preserve_index=False).replace_schema_metadata(
                table.schema.metadata
            )
            round_ = len(list(work.glob(f"batches-{index:05d}-retry*.parquet"))) + 1
            write_batch_metrics(work / f"batches-{index:05d}-retry{round_}.parquet", metrics)
            write_table(path, retried)
            manifest.parts[name].update(status_counts(part))
            manifest.save(settings.output)
        openings, paused = client.resilience_totals()
    seconds = time.monotonic() - started
    return job.finish(manifest, seconds, model, version, Totals(seconds, openings, paused))


def _last_batch_id(path: Path) -> int:
    """The highest batch id in a file of batch metrics (-1 when it has none)."""
    found = pc.max(pq.read_table(path, columns=["batch_id"]).column(0)).as_py()
    return -1 if found is None else int(found)
