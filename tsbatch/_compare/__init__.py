"""Comparing two model versions on the same rows: :func:`compare` and its :class:`ComparisonReport`.

The modules, from the bottom up: ``_inputs`` (reading frames, job outputs
and Parquet files; matching rows by id), ``_metrics`` (the figures),
``_check`` (thresholds), ``_render`` (text, HTML, plots), ``_report`` (the
report object), ``_build`` (:func:`compare`).
"""

from tsbatch._compare._build import DEFAULT_N_BOOT, compare
from tsbatch._compare._report import ComparisonReport, Difference, Scores

__all__ = ["DEFAULT_N_BOOT", "ComparisonReport", "Difference", "Scores", "compare"]
