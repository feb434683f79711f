"""Failed console logins, counted per account name and per client address, in memory.

    limiter = LoginLimiter()                  # 5 failures per name, 20 per address, in 300 s
    try:
        attempt = limiter.attempt(name, ip)   # TooManyAttemptsError: answer 429, check nothing
    except TooManyAttemptsError as exc:
        ... exc.retry_after ...
    with attempt:                             # left without an outcome: counts as nothing
        ok = check_password()
        if not ok:
            attempt.failed()                  # -> what this failure locked, if anything
        else:
            attempt.succeeded()               # clears the name's failures

A key with `limit` failures within `window_s` is locked for `lockout_s`, then starts
afresh. An attempt is held (counted) from the moment it is allowed until its outcome is
known, so concurrent requests cannot get more than `limit` guesses past the check before
the failures are recorded. Per process: several workers each count on their own. Memory
is bounded: entries whose window and lockout passed are forgotten, and past `max_keys`
per kind the least recently used are dropped, locked ones last.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from ingest_server.errors import RefusedError


class TooManyAttemptsError(RefusedError):
    """Refused without checking anything; `retry_after`: whole seconds, at least 1."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} s")
        self.message_zh = f"登录失败次数过多, 请 {retry_after} 秒后再试"
        self.retry_after = retry_after


@dataclass
class _Entry:
    failures: deque[float] = field(default_factory=deque)
    held: int = 0  # attempts allowed whose outcome is not known yet
    locked_until: float = -math.inf


class _Counter:
    """The failures of one kind of key (names or addresses). Not locked: LoginLimiter is."""

    def __init__(self, limit: int, window_s: float, lockout_s: float, max_keys: int) -> None:
        self.limit, self.window_s, self.lockout_s = limit, window_s, lockout_s
        self.max_keys = max_keys
        self.entries: OrderedDict[str, _Entry] = OrderedDict()

    def _current(self, e: _Entry, now: float) -> None:
        while e.failures and e.failures[0] <= now - self.window_s:
            e.failures.popleft()

    def _idle(self, e: _Entry, now: float) -> bool:
        self._current(e, now)
        return not e.failures and not e.held and e.locked_until <= now

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        e = self.entries.get(key)
        if e is None:
            return 0.0
        if e.locked_until > now:
            return e.locked_until - now
        self._current(e, now)
        if len(e.failures) + e.held >= self.limit:
            return 1.0  # the attempts in flight may lock it: soon known
        return 0.0

    def hold(self, key: str, now: float) -> None:
        e = self.entries.get(key)
        if e is None:
            e = self.entries[key] = _Entry()
        self.entries.move_to_end(key)
        e.held += 1
        self._bound(now)

    def release(self, key: str, now: float) -> None:
        e = self.entries.get(key)
        if e is None:  # dropped meanwhile by the bound
            return
        e.held = max(0, e.held - 1)
        if self._idle(e, now):
            del self.entries[key]

    def fail(self, key: str, now: float) -> bool:
        """Release a held attempt as a failure; True when that locks the key."""
        e = self.entries.get(key)
        if e is None:
            e = self.entries[key] = _Entry()
        else:
            e.held = max(0, e.held - 1)
        self.entries.move_to_end(key)
        if e.locked_until > now:  # an attempt in flight when another one locked it
            return False
        self._current(e, now)
        e.failures.append(now)
        locked = len(e.failures) >= self.limit
        if locked:
            e.locked_until = now + self.lockout_s
            e.failures.clear()
        self._bound(now)
        return locked

    def clear(self, key: str, now: float) -> None:
        """Release a held attempt as a success: the key's failures are forgotten."""
        e = self.entries.get(key)
        if e is None:
            return
        e.held = max(0, e.held - 1)
        e.failures.clear()
        if self._idle(e, now):
            del self.entries[key]

    def _bound(self, now: float) -> None:
        if len(self.entries) <= self.max_keys:
            return
        for key in [k for k, e in self.entries.items() if self._idle(e, now)]:
            del self.entries[key]
        # then the least recently used, a lockout last: a flood of new names must not
        # lift the lockout of the account it is meant to hide
        excess = max(0, len(self.entries) - self.max_keys)
        for key in [k for k, e in self.entries.items() if e.locked_until <= now][:excess]:
            del self.entries[key]
        while len(self.entries) > self.max_keys:
            self.entries.popitem(last=False)


class LoginLimiter:
    """Thread-safe; `clock` (seconds, monotonic) may be replaced, e.g. by tests."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 300.0,
        lockout_s: float = 300.0,
        *,
        ip_max_failures: int = 20,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(max_failures, ip_max_failures, max_keys) < 1 or min(window_s, lockout_s) <= 0:
            raise ValueError("limits, window and lockout must be positive")
        self.names = _Counter(max_failures, window_s, lockout_s, max_keys)
        self.ips = _Counter(ip_max_failures, window_s, lockout_s, max_keys)
        self.clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def name_key(name: str) -> str:
        """Case and surrounding spaces do not make another name; nor does anything past
        256 characters (no account name is that long: it only bounds the memory)."""
        return name.strip().lower()[:256]

    def attempt(self, name: str, ip: str) -> Attempt:
        """An attempt to check a password, held until its outcome; TooManyAttemptsError while
        the name or the address is locked (or has as many attempts in flight as it has
        failures left)."""
        key, ip = self.name_key(name), ip[:64]
        with self._lock:
            now = self.clock()
            wait = max(self.names.wait(key, now), self.ips.wait(ip, now))
            if wait > 0:
                raise TooManyAttemptsError(max(1, math.ceil(wait)))
            self.names.hold(key, now)
            self.ips.hold(ip, now)
        return Attempt(self, key, ip)

    def tracked(self) -> tuple[int, int]:
        """(names, addresses) currently remembered."""
        with self._lock:
            return len(self.names.entries), len(self.ips.entries)


class Attempt:
    """One allowed login attempt; report its outcome once (a second report is ignored)."""

    def __init__(self, limiter: LoginLimiter, name_key: str, ip: str) -> None:
        self._limiter, self._key, self._ip = limiter, name_key, ip
        self._open = True

    def failed(self) -> list[str]:
        """Record a wrong name or password; returns what it locked: "account", "ip"."""
        lim = self._limiter
        with lim._lock:
            if not self._open:
                return []
            self._open = False
            now = lim.clock()
            hits = (
                ("account", lim.names.fail(self._key, now)),
                ("ip", lim.ips.fail(self._ip, now)),
            )
            return [what for what, hit in hits if hit]

    def succeeded(self) -> None:
        """A right password: the name's failures are forgotten (the address's are not)."""
        self._close(forget_name=True)

    def _close(self, *, forget_name: bool) -> None:
        lim = self._limiter
        with lim._lock:
            if not self._open:
                return
            self._open = False
            now = lim.clock()
            if forget_name:
                lim.names.clear(self._key, now)
            else:
                lim.names.release(self._key, now)
            lim.ips.release(self._ip, now)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        """Without an outcome (e.g. the database failed): counted as nothing."""
        self._close(forget_name=False)
