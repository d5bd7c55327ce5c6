"""The recovery policy alone: ten minutes of escalation and the connect backoff, in microseconds."""

from __future__ import annotations

from appliance.presence.recovery import (
    CONNECT_BACKOFF_MAX_S,
    RECOVERY_GIVE_UP_S,
    SCAN_STALL_S,
    Recovery,
    RecoveryPolicy,
    connect_backoff_s,
)


def test_a_scanner_that_hears_nothing_for_the_stall_time_is_stalled() -> None:
    policy = RecoveryPolicy()
    assert not policy.stalled(5, 0.0, expect_silence=False)  # the first look only starts counting
    assert not policy.stalled(5, SCAN_STALL_S, expect_silence=False)
    assert policy.stalled(5, SCAN_STALL_S + 1, expect_silence=False)
    assert not policy.stalled(6, SCAN_STALL_S + 2, expect_silence=False)  # it heard something


def test_silence_while_beacons_are_linked_is_no_stall() -> None:
    policy = RecoveryPolicy()
    policy.stalled(5, 0.0, expect_silence=False)
    assert not policy.stalled(5, 10 * SCAN_STALL_S, expect_silence=True)
    assert not policy.stalled(5, 10 * SCAN_STALL_S + 1, expect_silence=False)  # counts from then


def test_recovery_escalates_gives_up_waits_ten_minutes_then_starts_over() -> None:
    policy = RecoveryPolicy()
    actions = [policy.decide(healthy=False, now=t) for t in (0.0, 10.0, 20.0)]
    assert actions == [Recovery.RESTART_SCANNER, Recovery.RESET_ADAPTER, Recovery.GIVE_UP]
    assert [policy.decide(healthy=False, now=20.0 + t) for t in (10.0, RECOVERY_GIVE_UP_S - 1)] == [
        Recovery.WAIT, Recovery.WAIT]
    assert policy.decide(healthy=False, now=20.0 + RECOVERY_GIVE_UP_S) is Recovery.RESTART_SCANNER


def test_a_healthy_check_resets_the_escalation() -> None:
    policy = RecoveryPolicy()
    assert policy.decide(healthy=False, now=0.0) is Recovery.RESTART_SCANNER
    assert policy.decide(healthy=True, now=10.0) is Recovery.NOTHING
    assert policy.decide(healthy=False, now=20.0) is Recovery.RESTART_SCANNER


def test_connect_backoff_doubles_from_five_seconds_to_five_minutes() -> None:
    assert [connect_backoff_s(n) for n in range(8)] == [0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0]
    assert connect_backoff_s(1000) == CONNECT_BACKOFF_MAX_S
