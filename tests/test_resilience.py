"""Retry budget and Retry-After parsing, with a controlled clock."""

from __future__ import annotations

import email.utils

import pytest

from tests.client_helpers import FakeTime
from tsbatch import RetryPolicy, TorchServeConnectionError, TorchServeInferenceError
from tsbatch._resilience import RetryBudget, assess, parse_retry_after


def test_budget_allows_about_a_fifth_of_requests_as_retries() -> None:
    time = FakeTime()
    budget = RetryBudget(RetryPolicy(budget_reserve=0, budget_min_per_second=0), time.clock)
    granted = 0
    for _ in range(100):
        budget.deposit()
        granted += budget.try_withdraw()
    assert granted == 20


def test_budget_refills_slowly_with_time() -> None:
    time = FakeTime()
    budget = RetryBudget(RetryPolicy(budget_reserve=2, budget_min_per_second=1), time.clock)
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]
    time.advance(1)
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    time.advance(3600)
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("0", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now) == pytest.approx(90)
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    ("error", "retried", "breaker_failure"),
    [
        (TorchServeConnectionError("x", kind="connect"), True, True),
        (TorchServeConnectionError("x", kind="timeout"), True, True),
        (TorchServeInferenceError("x", status=429), True, False),
        (TorchServeInferenceError("x", status=502), True, True),
        (TorchServeInferenceError("x", status=503, error_type="ServiceUnavailableException"), True, True),
        (TorchServeInferenceError("x", status=503, error_type="InternalServerException"), False, False),
        (TorchServeInferenceError("x", status=504), True, True),
        (
            TorchServeInferenceError("Worker died.", status=500, error_type="InternalServerException"),
            True,
            True,
        ),
        (TorchServeInferenceError("x", status=507), False, True),
        (TorchServeInferenceError("x", status=400), False, False),
        (TorchServeInferenceError("x", status=404), False, False),
        (TorchServeInferenceError("x", status=413), False, False),
    ],
)
def test_what_is_retried_and_what_counts(error: Exception, retried: bool, breaker_failure: bool) -> None:
    verdict = assess(error)
    assert (verdict.retry_reason is not None, verdict.breaker_failure) == (retried, breaker_failure)
