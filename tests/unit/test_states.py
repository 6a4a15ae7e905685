"""Job states: ranks and the one table of moves."""

from __future__ import annotations

import pytest

from jobmesh.common.states import (
    CLOUDMESH_STATUS,
    RANK,
    TERMINAL,
    JobState,
    WorkflowState,
    should_apply,
)

pytestmark = pytest.mark.unit
S = JobState


def test_ranks_follow_the_life_of_a_job() -> None:
    assert S.PENDING.rank < S.READY.rank < S.QUEUED.rank < S.RUNNING.rank
    assert {s.rank for s in TERMINAL} == {S.RUNNING.rank + 1}
    assert set(RANK) == set(S)


def test_terminal_states() -> None:
    assert TERMINAL == {S.SUCCEEDED, S.FAILED, S.CANCELED, S.SKIPPED}
    assert not any(s.terminal for s in (S.PENDING, S.READY, S.QUEUED, S.RUNNING))


@pytest.mark.parametrize("old, new", [
    (S.PENDING, S.READY), (S.READY, S.QUEUED), (S.QUEUED, S.RUNNING),
    (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.CANCELED),
    (S.PENDING, S.SKIPPED), (S.PENDING, S.CANCELED),
    (S.READY, S.RUNNING),        # a local job may skip QUEUED
    (S.QUEUED, S.SUCCEEDED),     # finished between polls
    (S.PENDING, S.RUNNING),      # an executor's event may arrive before 'ready'
])
def test_forward_moves_apply(old: JobState, new: JobState) -> None:
    assert should_apply(old, new)


@pytest.mark.parametrize("old, new", [
    *[(s, s) for s in JobState],                     # duplicates
    (S.RUNNING, S.QUEUED), (S.RUNNING, S.READY), (S.QUEUED, S.READY),  # stale
    (S.SUCCEEDED, S.FAILED), (S.FAILED, S.SUCCEEDED), (S.CANCELED, S.SKIPPED),
    (S.SUCCEEDED, S.PENDING), (S.FAILED, S.RUNNING),  # never leave a terminal state
])
def test_stale_or_duplicate_moves_are_dropped(old: JobState, new: JobState) -> None:
    assert not should_apply(old, new)


def test_nothing_leaves_a_terminal_state() -> None:
    for old in TERMINAL:
        assert not any(should_apply(old, new) for new in JobState)


def test_str_is_the_value() -> None:
    assert str(S.SUCCEEDED) == "SUCCEEDED"
    assert str(WorkflowState.RUNNING) == "RUNNING"
    assert S("FAILED") is S.FAILED


def test_workflow_terminal() -> None:
    assert [w for w in WorkflowState if w.terminal] == [
        WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELED]


def test_cloudmesh_status_words() -> None:
    assert CLOUDMESH_STATUS == {
        S.PENDING: "ready", S.READY: "ready", S.QUEUED: "submitted", S.RUNNING: "running",
        S.SUCCEEDED: "done", S.FAILED: "failed", S.CANCELED: "canceled", S.SKIPPED: "skipped"}
