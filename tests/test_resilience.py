"""Retry budget and Retry-After parsing, with a controlled clock."""

from __future__ import annotations

import email.utils

import pytest

from tests.client_helpers import FakeTime
from tsbatch import RetryPolicy, TorchServeConnectionError, TorchServeInferenceError
from tsbatch._protocols._base import parse_retry_after
from tsbatch._resilience import assess
from tsbatch._retry import RetryBudget


def test_budget_allows_about_a_fifth_of_requests_as_retries() -> None:
    time = FakeTime()
    budget = RetryBudget(RetryPolicy(budget_min_per_second=0), time.clock)
    granted = 0
    for _ in range(100):
        budget.deposit()
        granted += budget.try_withdraw()
    assert granted == 20


def test_a_burst_of_failures_in_a_busy_run_is_retried_in_full() -> None:
    time = FakeTime()
    budget = RetryBudget(RetryPolicy(), time.clock)
    for _ in range(1000):  # a healthy run: 1,000 requests within a few seconds
        budget.deposit()
        time.advance(0.003)
    # Then 150 requests fail together: each gets its retry (0.2 x 1,000 + the reserve of 10).
    assert all(budget.try_withdraw() for _ in range(150))


def test_the_budget_forgets_requests_older_than_its_window() -> None:
    time = FakeTime()
    budget = RetryBudget(RetryPolicy(budget_window=10), time.clock)
    for _ in range(1000):
        budget.deposit()
    time.advance(11)
    # Only the reserve is left: 1 per second of the window.
    assert sum(budget.try_withdraw() for _ in range(50)) == 10


def test_a_dead_server_gets_the_reserve_and_no_more() -> None:
    time = FakeTime()
    budget = RetryBudget(RetryPolicy(budget_min_per_second=1, budget_window=10), time.clock)
    assert sum(budget.try_withdraw() for _ in range(100)) == 10
    time.advance(5)  # retries stay counted for the whole window
    assert not budget.try_withdraw()
    time.advance(6)
    assert budget.try_withdraw()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("0", 0.0), (None, None), ("", None), ("soon", None), ("²", None), ("1²", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now) == pytest.approx(90)
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    ("error", "retried", "breaker_failure", "overload"),
    [
        (TorchServeConnectionError("x", kind="connect"), True, True, False),
        (TorchServeConnectionError("x", kind="reset"), True, True, False),
        (TorchServeConnectionError("x", kind="timeout"), True, True, True),
        (TorchServeInferenceError("x", status=429), True, False, True),
        (TorchServeInferenceError("x", status=502), True, True, False),
        (
            TorchServeInferenceError("x", status=503, error_type="ServiceUnavailableException"),
            True,
            False,
            True,
        ),
        (TorchServeInferenceError("x", status=503), True, True, False),
        (
            TorchServeInferenceError("x", status=503, error_type="InternalServerException"),
            False,
            False,
            False,
        ),
        (TorchServeInferenceError("x", status=504), True, True, False),
        (
            TorchServeInferenceError("Worker died.", status=500, error_type="InternalServerException"),
            True,
            True,
            False,
        ),
        (TorchServeInferenceError("x", status=507), False, True, False),
        (TorchServeInferenceError("x", status=200, error_type="MalformedResponse"), False, True, False),
        (TorchServeInferenceError("x", status=200, error_type="InvalidPrediction"), False, False, False),
        (TorchServeInferenceError("x", status=400), False, False, False),
        (TorchServeInferenceError("x", status=404), False, False, False),
        (TorchServeInferenceError("x", status=413), False, False, False),
    ],
)
def test_what_is_retried_and_what_counts(
    error: Exception, retried: bool, breaker_failure: bool, overload: bool
) -> None:
    verdict = assess(error)
    assert (verdict.retry_reason is not None, verdict.breaker_failure, verdict.overload) == (
        retried,
        breaker_failure,
        overload,
    )
