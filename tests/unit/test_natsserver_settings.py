"""The embedded nats-server's settings (libs/cli/natsserver.py): max_payload from
JOBMESH_NATS_MAX_PAYLOAD (8MB unless set; 1MB to 64MB), and a Go soft memory limit
(GOMEMLIMIT) unless the environment sets one."""

from __future__ import annotations

import pytest

from jobmesh.cli.natsserver import GOMEMLIMIT, NatsServerError, config, server_env


def test_max_payload_is_8mb_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBMESH_NATS_MAX_PAYLOAD", raising=False)
    assert config("t").startswith("max_payload: 8MB\n")
    for given, written in (("32MB", "32MB"), (" 16mb ", "16MB"), ("2048KB", "2048KB"),
                           ("33554432", "33554432"), ("64MB", "64MB")):
        monkeypatch.setenv("JOBMESH_NATS_MAX_PAYLOAD", given)
        assert config("t").startswith(f"max_payload: {written}\n"), given


@pytest.mark.parametrize("bad", ["65MB", "512KB", "x", "-1MB", "1.5MB", "8GB"])
def test_a_bad_max_payload_says_what_is_allowed(monkeypatch: pytest.MonkeyPatch,
                                                 bad: str) -> None:
    monkeypatch.setenv("JOBMESH_NATS_MAX_PAYLOAD", bad)
    with pytest.raises(NatsServerError, match="from 1MB to 64MB"):
        config("t")


def test_the_server_gets_a_soft_memory_limit_unless_one_is_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    assert server_env()["GOMEMLIMIT"] == GOMEMLIMIT
    monkeypatch.setenv("GOMEMLIMIT", "1GiB")
    assert server_env()["GOMEMLIMIT"] == "1GiB"
