"""Password guessing at POST /api/v1/login: failures per name and per address lock them
for a while (ingest_server/api/ratelimit.py), on the real app and a real PostgreSQL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest_server.api.app import create_app
from ingest_server.api.ratelimit import LoginLimiter, TooManyAttemptsError
from ingest_server.repo.accounts import add_account, set_password

PASSWORDS = {"amy": "amy's long password", "bob": "bob's long password"}
URL = "/api/v1/login"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def site(db: str, tmp_path: Path) -> Iterator[tuple[TestClient, Clock, FastAPI, str]]:
    with psycopg.connect(db, autocommit=True) as conn:
        for name, password in PASSWORDS.items():
            add_account(conn, name, "admin", [])
            set_password(conn, name, password)
    app = create_app(db, signing_key=tmp_path / "k.pem")
    clock = Clock()
    app.state.login_limiter.clock = clock  # the limiter create_app made, with its limits
    with TestClient(app) as c:
        yield c, clock, app, db


def attempt(c: TestClient, name: str, right: bool = False) -> Any:
    password = PASSWORDS.get(name, "x" * 12) if right else "a wrong password"
    return c.post(URL, json={"name": name, "password": password})


def from_(app: FastAPI, ip: str) -> TestClient:
    """Another client address on the same running app (its lifespan is the fixture's)."""
    return TestClient(app, client=(ip, 40000))


def session_tokens(db: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM api_tokens WHERE label = 'login'").fetchone()
    assert row is not None
    return int(row[0])


def assert_locked(r: Any, seconds: int) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == str(seconds)
    err = r.json()["error"]
    assert err["code"] == "too_many_attempts"
    assert f"try again in {seconds} s" in err["message"]


def test_five_failures_lock_the_account_even_for_the_right_password(
    site: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c, clock, app, db = site
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        r = attempt(c, "amy")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"  # the 401s are as before
    assert_locked(attempt(c, "amy", right=True), 300)
    assert session_tokens(db) == 0  # the right password was not even checked
    # the name, whatever its case, from anywhere
    assert_locked(c.post(URL, json={"name": " AMY", "password": PASSWORDS["amy"]}), 300)
    assert_locked(attempt(from_(app, "10.9.8.7"), "amy", right=True), 300)
    locks = [r for r in caplog.records if "locked" in r.getMessage()]
    assert [(r.name, r.levelno) for r in locks] == [
        ("ingest_server.api.routes.auth", logging.WARNING)
    ]
    assert "'amy'" in locks[0].getMessage()
    assert "testclient" in locks[0].getMessage()
    secrets = [*PASSWORDS.values(), "a wrong password"]
    assert not [r for r in caplog.records for s in secrets if s in r.getMessage()]
    # no sleeping: the clock moves; the answer counts down, then the lockout is over
    clock.now += 100.5
    assert_locked(attempt(c, "amy", right=True), 200)  # 199.5 s left: rounded up
    clock.now += 199
    assert_locked(attempt(c, "amy", right=True), 1)
    clock.now += 0.5
    r = attempt(c, "amy", right=True)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "amy"
    assert session_tokens(db) == 1


def test_after_a_lockout_the_count_starts_afresh(site: Any) -> None:
    c, clock, _app, _db = site
    for _ in range(5):
        assert attempt(c, "amy").status_code == 401
    clock.now += 300
    for _ in range(4):
        assert attempt(c, "amy").status_code == 401
    assert attempt(c, "amy", right=True).status_code == 200
    for _ in range(5):
        assert attempt(c, "amy").status_code == 401
    assert_locked(attempt(c, "amy"), 300)


def test_a_success_clears_the_failures_of_the_name(site: Any) -> None:
    c, _clock, _app, _db = site
    for _ in range(4):
        assert attempt(c, "amy").status_code == 401
    assert attempt(c, "amy", right=True).status_code == 200
    for _ in range(4):
        assert attempt(c, "amy").status_code == 401
    assert attempt(c, "amy", right=True).status_code == 200  # not locked: 4 since, not 8
    for _ in range(5):
        assert attempt(c, "amy").status_code == 401
    assert_locked(attempt(c, "amy", right=True), 300)


def test_failures_older_than_the_window_do_not_count(site: Any) -> None:
    c, clock, _app, _db = site
    for _ in range(4):
        assert attempt(c, "amy").status_code == 401
    clock.now += 301
    for _ in range(4):
        assert attempt(c, "amy").status_code == 401
    assert attempt(c, "amy", right=True).status_code == 200


def test_one_accounts_lockout_leaves_the_others_alone(site: Any) -> None:
    c, _clock, _app, _db = site
    for _ in range(5):
        assert attempt(c, "amy").status_code == 401
    assert_locked(attempt(c, "amy", right=True), 300)
    assert attempt(c, "bob").status_code == 401  # checked, not refused
    r = attempt(c, "bob", right=True)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "bob"
    assert_locked(attempt(c, "amy", right=True), 300)


def test_an_address_guessing_many_names_is_locked(
    site: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c, clock, app, _db = site
    caplog.set_level(logging.WARNING, logger="ingest_server.api.routes.auth")
    # 20 failures from one address, never 5 for one name
    for i in range(20):
        assert attempt(c, f"guess{i % 10}").status_code == 401, i
    assert_locked(attempt(c, "bob", right=True), 300)
    assert_locked(attempt(c, "nobody"), 300)
    assert [r.getMessage() for r in caplog.records if "ip locked" in r.getMessage()] == [
        "login: ip locked after repeated failures (account 'guess9', from testclient)"
    ]
    # another address is not, nor are the names
    r = attempt(from_(app, "10.1.2.3"), "bob", right=True)
    assert r.status_code == 200, r.text
    assert attempt(from_(app, "10.1.2.3"), "guess0").status_code == 401
    clock.now += 300
    assert attempt(c, "bob", right=True).status_code == 200


def test_the_route_asks_the_limiter_on_the_app(site: Any) -> None:
    c, _clock, app, _db = site
    app.state.login_limiter = LoginLimiter(max_failures=1, clock=Clock())
    assert attempt(c, "bob").status_code == 401
    assert_locked(attempt(c, "bob", right=True), 300)


# --- the limiter alone --------------------------------------------------------------


def fail(lim: LoginLimiter, name: str, ip: str) -> list[str]:
    return lim.attempt(name, ip).failed()


def test_a_lockout_shorter_than_the_window_forgets_the_failures_before_it() -> None:
    clock = Clock()
    lim = LoginLimiter(max_failures=3, window_s=600, lockout_s=60, clock=clock)
    assert [fail(lim, "amy", "1.1.1.1") for _ in range(3)] == [[], [], ["account"]]
    with pytest.raises(TooManyAttemptsError) as exc:
        lim.attempt("amy", "1.1.1.1")
    assert exc.value.retry_after == 60
    clock.now += 60
    assert [fail(lim, "amy", "1.1.1.1") for _ in range(3)] == [[], [], ["account"]]


def test_attempts_in_flight_count_before_their_outcome() -> None:
    clock = Clock()
    lim = LoginLimiter(clock=clock)
    held = [lim.attempt("amy", "1.1.1.1") for _ in range(5)]
    with pytest.raises(TooManyAttemptsError) as exc:  # 5 guesses at once, not more
        lim.attempt("Amy", "2.2.2.2")
    assert exc.value.retry_after == 1
    assert [a.failed() for a in held] == [[], [], [], [], ["account"]]
    with pytest.raises(TooManyAttemptsError) as exc:
        lim.attempt("amy", "2.2.2.2")
    assert exc.value.retry_after == 300
    # an attempt left without an outcome (the database failed) counts as nothing
    with pytest.raises(RuntimeError), lim.attempt("bob", "3.3.3.3"):
        raise RuntimeError("database down")
    assert lim.tracked() == (1, 1)  # amy (locked) and 1.1.1.1 (5 of its 20); not bob
    for _ in range(4):
        assert fail(lim, "bob", "3.3.3.3") == []
    assert fail(lim, "bob", "3.3.3.3") == ["account"]


def test_threads_get_no_more_guesses_than_the_limit() -> None:
    lim = LoginLimiter(clock=Clock())
    n = 40
    allowed: list[bool] = []
    barrier = threading.Barrier(n)

    def guess() -> None:
        try:
            a = lim.attempt("amy", "1.1.1.1")
        except TooManyAttemptsError:
            allowed.append(False)
            barrier.wait()
            return
        allowed.append(True)
        barrier.wait()  # every thread has asked before any failure is recorded
        a.failed()

    threads = [threading.Thread(target=guess) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 5
    with pytest.raises(TooManyAttemptsError):
        lim.attempt("amy", "9.9.9.9")


def test_a_flood_of_names_does_not_grow_the_memory() -> None:
    clock = Clock()
    lim = LoginLimiter(max_keys=50, clock=clock)
    for i in range(5000):
        fail(lim, f"random-{i}", f"10.0.{i // 256}.{i % 256}")
        clock.now += 0.01
    assert lim.tracked() == (50, 50)
    # the most recent are kept
    assert set(lim.names.entries) == {f"random-{i}" for i in range(4950, 5000)}


def test_entries_are_forgotten_once_their_window_has_passed() -> None:
    clock = Clock()
    lim = LoginLimiter(max_keys=10, clock=clock)
    for i in range(10):
        fail(lim, f"old-{i}", "1.1.1.1")
    assert lim.tracked() == (10, 1)
    clock.now += 301
    for i in range(3):
        fail(lim, f"new-{i}", "2.2.2.2")
    assert sorted(lim.names.entries) == ["new-0", "new-1", "new-2"]  # not 7 old ones kept
    # a success forgets the name at once; a name's entry is as long as 256 characters
    lim.attempt("new-0", "2.2.2.2").succeeded()
    assert "new-0" not in lim.names.entries
    fail(lim, "x" * 100_000, "2.2.2.2")
    assert max(len(k) for k in lim.names.entries) == 256


def test_a_flood_does_not_lift_a_lockout() -> None:
    clock = Clock()
    lim = LoginLimiter(max_keys=20, clock=clock)
    for _ in range(5):
        fail(lim, "amy", "1.1.1.1")
    for i in range(1000):
        fail(lim, f"random-{i}", f"10.0.{i // 256}.{i % 256}")
    assert lim.tracked()[0] == 20
    with pytest.raises(TooManyAttemptsError):
        lim.attempt("amy", "5.5.5.5")
    clock.now += 300
    lim.attempt("amy", "5.5.5.5").succeeded()


def test_limits_must_be_positive() -> None:
    for bad in ({"max_failures": 0}, {"window_s": 0}, {"lockout_s": -1}, {"max_keys": 0}):
        with pytest.raises(ValueError, match="positive"):
            LoginLimiter(**bad)  # type: ignore[arg-type]
