"""The home's NATS token file: private from its first byte, replaced or refused when other
accounts could have read it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobmesh.cli.natsserver import NatsServerError, config
from jobmesh.common.credentials import (
    CredentialsError,
    ensure_token,
    read_token,
    token_path,
    write_private,
)

pytestmark = pytest.mark.unit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the most permissive umask: files would be 0666
    yield
    os.umask(old)


def test_a_private_file_is_0600_even_with_umask_0(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "secret"
    write_private(path, "one\n")
    assert mode(path) == 0o600 and path.read_text() == "one\n"
    path.chmod(0o644)
    write_private(path, "two\n")  # replaced by a new private file, not rewritten in place
    assert mode(path) == 0o600 and path.read_text() == "two\n"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary left


def test_the_token_is_made_once_and_kept(tmp_path: Path, open_umask: None) -> None:
    token, warning = ensure_token(tmp_path)
    assert warning is None and len(token) >= 32 and mode(token_path(tmp_path)) == 0o600
    assert ensure_token(tmp_path) == (token, None)
    assert read_token(tmp_path) == token


@pytest.mark.parametrize("loosen", ["group", "other", "symlink"])
def test_a_token_others_could_read_is_replaced_at_start_and_refused_by_clients(
        tmp_path: Path, loosen: str) -> None:
    old, _ = ensure_token(tmp_path)
    path = token_path(tmp_path)
    if loosen == "symlink":
        target = tmp_path / "elsewhere"
        target.write_text(old)
        target.chmod(0o600)
        path.unlink()
        path.symlink_to(target)
        why = "is not a regular file"
    else:
        path.chmod(0o640 if loosen == "group" else 0o604)
        why = f"can be read by other accounts (mode {0o640 if loosen == 'group' else 0o604:04o})"
    with pytest.raises(CredentialsError) as refused:
        read_token(tmp_path)
    assert str(refused.value) == (f"the NATS token {path} {why}; 'jobmesh down' and "
                                  "'jobmesh up' make a new one")
    new, warning = ensure_token(tmp_path)
    assert new != old and warning == (f"{path} {why}: replaced it with a new token (mode "
                                      "0600); anything that used the old one must read "
                                      "the new one")
    assert mode(path) == 0o600 and not path.is_symlink() and read_token(tmp_path) == new


def test_a_missing_or_empty_token_is_refused_by_clients(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="is missing; 'jobmesh down' and 'jobmesh up'"):
        read_token(tmp_path)
    write_private(token_path(tmp_path), "\n")
    with pytest.raises(CredentialsError, match="is empty"):
        read_token(tmp_path)
    token, _ = ensure_token(tmp_path)  # an empty one is replaced at start
    assert token and read_token(tmp_path) == token


def test_the_server_config_requires_the_token() -> None:
    assert config("abc-_123") == ('max_payload: 8MB\nauthorization {\n  token: "abc-_123"\n}\n')
    for bad in ("", 'a"b', "a\\b", "a\nb", "$VAR"):
        with pytest.raises(NatsServerError):
            config(bad)
