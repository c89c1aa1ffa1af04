"""Run reports: what a run did, from a result frame or a job's output folder."""

from tsbatch._report._summary import RunSummary, report

__all__ = ["RunSummary", "report"]
