"""A job's own metrics, next to the client's in one registry (served live, pushed at the end)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class JobMetrics:
    """Rows finished by status, the last run's wall time, and the time of the last success.

    The last-success gauge is only registered by a run that succeeds, so a
    failed run pushed with ``pushadd`` leaves the previous success in place.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rows = Counter(
            "tsbatch_job_rows", "Rows a batch job finished, by outcome", ["status"], registry=self.registry
        )
        self.duration = Gauge(
            "tsbatch_job_duration_seconds", "Wall time of the last job run", registry=self.registry
        )
        self._last_success: Gauge | None = None

    def mark_success(self) -> None:
        """Record that the job finished with every row classified."""
        if self._last_success is None:
            self._last_success = Gauge(
                "tsbatch_job_last_success_timestamp_seconds",
                "Unix time at which the job last finished with every row classified",
                registry=self.registry,
            )
        self._last_success.set_to_current_time()
