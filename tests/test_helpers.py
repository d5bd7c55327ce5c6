"""The tests' one wait-until (helpers.wait_for and its blocking twin): what it returns, what it
tolerates, and what its failure says."""

from __future__ import annotations

import itertools

import pytest
from helpers import wait_for, wait_for_blocking


async def test_wait_for_returns_the_first_true_result_of_a_sync_or_async_predicate() -> None:
    looks = itertools.count()
    assert await wait_for(lambda: next(looks) >= 3 and "ready", interval=0) == "ready"

    async def answer() -> int | None:
        return 7 if next(looks) >= 6 else None

    assert await wait_for(answer, interval=0) == 7


async def test_wait_for_counts_a_retry_on_error_as_not_yet_and_names_the_last_one() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("nobody listens")

    with pytest.raises(AssertionError, match=r"waiting for the server \(last error: nobody listens\)"):
        await wait_for(refused, within=0.1, what="the server", retry_on=(OSError,))
    with pytest.raises(ConnectionRefusedError):  # not in retry_on: at once
        await wait_for(refused, within=5)


async def test_a_predicates_own_timeout_error_is_not_taken_for_the_deadline() -> None:
    def times_out() -> bool:
        raise TimeoutError("the probe's own")

    with pytest.raises(TimeoutError, match="the probe's own"):
        await wait_for(times_out, within=5)


def test_wait_for_blocking_looks_until_true_and_fails_after_the_deadline() -> None:
    looks = itertools.count()
    assert wait_for_blocking(lambda: next(looks) >= 2, within=5, interval=0, what="x") is True
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for nothing"):
        wait_for_blocking(lambda: None, within=0.05, interval=0.01, what="nothing")
