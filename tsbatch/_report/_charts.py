"""A run report's plots: throughput, latency, the limit in flight, errors and retries, labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tsbatch._plots import new_figure
from tsbatch._report._figures import Figures, errors_per_batch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Bins of a time series.
BINS = 40
#: Labels the distribution shows; the rest are summed as "other".
TOP_LABELS = 15


def draw(figures: Figures, batches: pd.DataFrame, rows: pd.DataFrame, title: str) -> Figure:
    """Six panels: rows/s over time, latency by batch, latency histogram, the limit of requests
    in flight over time, errors and retries over time, and the predicted labels."""
    figure, axes = new_figure(3, 2, height=3.0)
    figure.suptitle(title)
    timed = batches.dropna(subset=["ended_at"]).copy()
    if len(timed):
        start = timed["started_at"].min()
        timed["start_s"] = (timed["started_at"] - start).dt.total_seconds()
        timed["end_s"] = (timed["ended_at"] - start).dt.total_seconds()
        timed["error_rows"] = errors_per_batch(timed, rows)
    _throughput(axes[0][0], timed)
    _latency(axes[0][1], timed, figures)
    _latency_histogram(axes[1][0], timed, figures)
    _limit(axes[1][1], timed)
    _errors(axes[2][0], timed)
    _labels(axes[2][1], figures)
    return figure


def _no_data(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "no batches", ha="center", va="center", transform=ax.transAxes, color="gray")


def _bins(timed: pd.DataFrame) -> np.ndarray:
    end = max(float(timed["end_s"].max()), 1e-3)
    return np.linspace(0.0, end, BINS + 1)


def _throughput(ax: Any, timed: pd.DataFrame) -> None:
    title = "rows/s over time (rows finished per second)"
    if timed.empty:
        return _no_data(ax, title)
    edges = _bins(timed)
    done, _ = np.histogram(timed["end_s"], bins=edges, weights=timed["rows"])
    ax.stairs(done / np.diff(edges), edges, fill=True, alpha=0.6)
    ax.set(title=title, xlabel="seconds since the first batch", ylabel="rows/s")


def _latency(ax: Any, timed: pd.DataFrame, figures: Figures) -> None:
    title = "latency by batch"
    if timed.empty:
        return _no_data(ax, title)
    failed = timed["status"] != "ok"
    ax.scatter(timed.loc[~failed, "start_s"], timed.loc[~failed, "latency_ms"], s=6, label="ok")
    if failed.any():
        ax.scatter(
            timed.loc[failed, "start_s"], timed.loc[failed, "latency_ms"], s=10, c="red", label="failed"
        )
    for name, value in (("p50", figures.latency_p50_ms), ("p99", figures.latency_p99_ms)):
        if value is not None:
            ax.axhline(value, linestyle="--", linewidth=0.8, color="gray")
            ax.annotate(f"{name} {value:.0f} ms", (0, value), fontsize=8, va="bottom")
    ax.set(title=title, xlabel="batch start (s)", ylabel="ms")
    ax.legend(loc="upper right", fontsize=8)


def _latency_histogram(ax: Any, timed: pd.DataFrame, figures: Figures) -> None:
    title = "latency distribution"
    latency = timed["latency_ms"].dropna() if len(timed) else pd.Series([], dtype="float64")
    if latency.empty:
        return _no_data(ax, title)
    ax.hist(latency, bins=BINS)
    ax.set(title=title, xlabel="ms per batch", ylabel="batches")


def _limit(ax: Any, timed: pd.DataFrame) -> None:
    title = "requests in flight allowed (the adaptive limit)"
    if timed.empty:
        return _no_data(ax, title)
    ordered = timed.sort_values("end_s")
    ax.step(ordered["end_s"], ordered["concurrency_limit"], where="post", marker=".")
    ax.set_ylim(bottom=0)
    ax.set(title=title, xlabel="seconds since the first batch", ylabel="limit")


def _errors(ax: Any, timed: pd.DataFrame) -> None:
    title = "errors and retries over time"
    if timed.empty:
        return _no_data(ax, title)
    edges = _bins(timed)
    retries, _ = np.histogram(timed["end_s"], bins=edges, weights=timed["retries"])
    errors, _ = np.histogram(timed["end_s"], bins=edges, weights=timed["error_rows"])
    ax.stairs(retries, edges, label="retries", fill=True, alpha=0.5)
    ax.stairs(errors, edges, label="error rows", color="red", linewidth=1.5)
    ax.set(title=title, xlabel="seconds since the first batch", ylabel="count")
    ax.legend(loc="upper right", fontsize=8)


def _labels(ax: Any, figures: Figures) -> None:
    title = "predicted labels (ok rows)"
    if not figures.labels:
        ax.set_title(title)
        ax.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax.transAxes, color="gray")
        return
    counts = pd.Series(figures.labels).sort_values(ascending=False)
    if len(counts) > TOP_LABELS:
        counts = pd.concat([counts.iloc[:TOP_LABELS], pd.Series({"other": counts.iloc[TOP_LABELS:].sum()})])
    ax.barh(counts.index[::-1], counts.to_numpy()[::-1])
    ax.set(title=title, xlabel="rows")
