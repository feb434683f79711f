"""The rows of `ingest-server anchor` (the one home of their SQL; the tree and the tokens
are evidence/merkle.py and evidence/timestamp.py, docs/evidence.md).

    day_windows      each site's local day as a UTC [start, end)
    day_leaves       the v2 batches the enterprise's gateways delivered in a local day
    days_with_batches  the local days with v2 batches received since a time
    current_anchor   a day's current root and its tokens (or errors), per TSA
    day_states       each local day of a period: its current anchor, v2 batches, end
    open_days        the days whose current root lacks a token from some TSA
    latest_day       the enterprise's latest day with a root
    add_anchor       a new current root for a day (the old one kept, superseded)
    save_token       a TSA's granted token over a root
    save_error       a TSA's failure (and its kind) for a root that has no token from it

A batch belongs to the local day (its gateway's site time zone) of its `received_at`, the
server's clock, not of `sent`, the gateway's: a backfill drained days after an outage
lands in the day it arrived instead of changing a day already time-stamped, and every
batch is in exactly one day's tree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from ingest_server.repo.ledger import site_windows


@dataclass(frozen=True)
class Token:
    """What one TSA gave for a root: a token and its time, or the last error and its kind
    (evidence/timestamp.py ERROR_KINDS; `other` for an error stored before the kinds)."""

    tsa_url: str
    tsa_name: str | None
    token: bytes | None
    gen_time: dt.datetime | None
    last_error: str | None
    attempted_at: dt.datetime
    last_error_kind: str | None = None


@dataclass(frozen=True)
class Anchor:
    """A day's current root (anchor_days) and what each TSA answered for it."""

    id: int
    day: dt.date
    root: bytes
    leaves: int
    leaf_order: int
    built_at: dt.datetime
    tokens: list[Token] = field(default_factory=list)

    @property
    def granted(self) -> list[Token]:
        return [t for t in self.tokens if t.token is not None]


def day_windows(
    conn: psycopg.Connection, *, enterprise: str, day: dt.date
) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Each site's local `day` as [start, end) in UTC."""
    return site_windows(conn, enterprise=enterprise, date_from=day, date_to=day)


def day_leaves(
    conn: psycopg.Connection, *, enterprise: str, day: dt.date
) -> list[tuple[str, str, int, int, bytes]]:
    """(site, gateway, boot, seq, digest) of every v2 batch of the enterprise received
    in its site's local `day` (unordered: the order is merkle.ordered's)."""
    windows = day_windows(conn, enterprise=enterprise, day=day)
    sites = sorted(windows)
    rows = conn.execute(
        "SELECT g.site_id, g.id, b.boot, b.seq, b.digest FROM batches b "
        "JOIN gateways g ON g.gid = b.gid "
        "JOIN unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS w(site, lo, hi) "
        "ON w.site = g.site_id "
        "WHERE g.enterprise_id = %s AND b.contract = 2 "
        "AND b.received_at >= w.lo AND b.received_at < w.hi",
        (sites, [windows[s][0] for s in sites], [windows[s][1] for s in sites], enterprise),
    ).fetchall()
    return [(site, gw, boot, seq, bytes(digest)) for site, gw, boot, seq, digest in rows]


def days_with_batches(
    conn: psycopg.Connection, *, enterprise: str, since: dt.datetime | None
) -> list[dt.date]:
    """The local days (site time zones) in which the enterprise's gateways delivered v2
    batches, counting batches received at or after `since` (None: all)."""
    rows = conn.execute(
        "SELECT DISTINCT (b.received_at AT TIME ZONE s.timezone)::date FROM batches b "
        "JOIN gateways g ON g.gid = b.gid "
        "JOIN sites s ON s.enterprise_id = g.enterprise_id AND s.id = g.site_id "
        "WHERE g.enterprise_id = %s AND b.contract = 2 "
        "AND (%s::timestamptz IS NULL OR b.received_at >= %s) ORDER BY 1",
        (enterprise, since, since),
    ).fetchall()
    return [r[0] for r in rows]


_ANCHOR = (
    "SELECT id, day, root, leaves, leaf_order, built_at FROM anchor_days "
    "WHERE enterprise_id = %s AND superseded_at IS NULL "
)


def _token(row: Sequence[Any]) -> Token:
    """A Token from (tsa_url, tsa_name, token, gen_time, last_error, attempted_at,
    last_error_kind); an error without a kind is one stored before the kinds (0014)."""
    url, name, tok, gen, err, at, kind = row
    kind = None if err is None else kind or "other"
    return Token(url, name, None if tok is None else bytes(tok), gen, err, at, kind)


def _tokens(conn: psycopg.Connection, anchor_id: int) -> list[Token]:
    rows = conn.execute(
        "SELECT tsa_url, tsa_name, token, gen_time, last_error, attempted_at, last_error_kind "
        "FROM anchor_tokens WHERE anchor_id = %s ORDER BY tsa_url",
        (anchor_id,),
    ).fetchall()
    return [_token(r) for r in rows]


def _anchor(conn: psycopg.Connection, row: tuple[Any, ...]) -> Anchor:
    id_, day, root, leaves, order, built = row
    return Anchor(id_, day, bytes(root), leaves, order, built, _tokens(conn, id_))


def current_anchor(conn: psycopg.Connection, *, enterprise: str, day: dt.date) -> Anchor | None:
    """The day's current root with its tokens, or None when the day has none."""
    row = conn.execute(_ANCHOR + "AND day = %s", (enterprise, day)).fetchone()
    return None if row is None else _anchor(conn, row)


@dataclass(frozen=True)
class DayState:
    """A local day as a report states its anchoring: the current root with its tokens
    (None: never anchored), the v2 batches received that day now, and when the day ends
    in the last of the enterprise's site time zones."""

    day: dt.date
    anchor: Anchor | None
    batches: int
    ends_at: dt.datetime


def day_states(
    conn: psycopg.Connection, *, enterprise: str, date_from: dt.date, date_to: dt.date
) -> list[DayState]:
    """Every local day from..to inclusive (four queries, whatever the period's length)."""
    zones = [
        ZoneInfo(tz)
        for (tz,) in conn.execute(
            "SELECT timezone FROM sites WHERE enterprise_id = %s", (enterprise,)
        ).fetchall()
    ] or [ZoneInfo("UTC")]
    days = [date_from + dt.timedelta(days=i) for i in range((date_to - date_from).days + 1)]
    windows = site_windows(conn, enterprise=enterprise, date_from=date_from, date_to=date_to)
    sites = sorted(windows)
    counts: dict[dt.date, int] = dict(
        conn.execute(
            "SELECT (b.received_at AT TIME ZONE s.timezone)::date, count(*) FROM batches b "
            "JOIN gateways g ON g.gid = b.gid "
            "JOIN sites s ON s.enterprise_id = g.enterprise_id AND s.id = g.site_id "
            "JOIN unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS w(site, lo, hi) "
            "ON w.site = g.site_id "
            "WHERE g.enterprise_id = %s AND b.contract = 2 "
            "AND b.received_at >= w.lo AND b.received_at < w.hi GROUP BY 1",
            (sites, [windows[s][0] for s in sites], [windows[s][1] for s in sites], enterprise),
        ).fetchall()
    )
    rows = conn.execute(
        _ANCHOR + "AND day BETWEEN %s AND %s", (enterprise, date_from, date_to)
    ).fetchall()
    tokens: dict[int, list[Token]] = {}
    for aid, *token in conn.execute(
        "SELECT anchor_id, tsa_url, tsa_name, token, gen_time, last_error, attempted_at, "
        "last_error_kind FROM anchor_tokens WHERE anchor_id = ANY(%s) "
        "ORDER BY anchor_id, tsa_url",
        ([r[0] for r in rows],),
    ).fetchall():
        tokens.setdefault(aid, []).append(_token(token))
    by_day = {
        day: Anchor(id_, day, bytes(root), leaves, order, built, tokens.get(id_, []))
        for id_, day, root, leaves, order, built in rows
    }
    return [
        DayState(
            day,
            by_day.get(day),
            int(counts.get(day, 0)),
            max(
                dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=z) for z in zones
            ).astimezone(dt.UTC),
        )
        for day in days
    ]


def open_days(conn: psycopg.Connection, *, enterprise: str, tsa_urls: list[str]) -> list[dt.date]:
    """The days whose current root has no token yet from one of `tsa_urls`."""
    rows = conn.execute(
        "SELECT a.day FROM anchor_days a WHERE a.enterprise_id = %s "
        "AND a.superseded_at IS NULL AND EXISTS (SELECT 1 FROM unnest(%s::text[]) AS u(url) "
        "WHERE NOT EXISTS (SELECT 1 FROM anchor_tokens t WHERE t.anchor_id = a.id "
        "AND t.tsa_url = u.url AND t.token IS NOT NULL)) ORDER BY 1",
        (enterprise, tsa_urls),
    ).fetchall()
    return [r[0] for r in rows]


def latest_day(conn: psycopg.Connection, *, enterprise: str) -> dt.date | None:
    row = conn.execute(
        "SELECT max(day) FROM anchor_days WHERE enterprise_id = %s", (enterprise,)
    ).fetchone()
    return None if row is None else row[0]


def add_anchor(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    day: dt.date,
    root: bytes,
    leaves: int,
    leaf_order: int,
) -> Anchor:
    """Make `root` the day's current one; a previous root is kept, superseded now."""
    with conn.transaction():
        conn.execute(
            "UPDATE anchor_days SET superseded_at = now() "
            "WHERE enterprise_id = %s AND day = %s AND superseded_at IS NULL",
            (enterprise, day),
        )
        row = conn.execute(
            "INSERT INTO anchor_days (enterprise_id, day, root, leaves, leaf_order, built_at) "
            "VALUES (%s, %s, %s, %s, %s, now()) "
            "RETURNING id, day, root, leaves, leaf_order, built_at",
            (enterprise, day, root, leaves, leaf_order),
        ).fetchone()
    assert row is not None
    return _anchor(conn, row)


def save_token(
    conn: psycopg.Connection,
    anchor_id: int,
    *,
    tsa_url: str,
    tsa_name: str,
    token: bytes,
    gen_time: dt.datetime,
) -> None:
    conn.execute(
        "INSERT INTO anchor_tokens (anchor_id, tsa_url, tsa_name, token, gen_time, "
        "last_error, attempted_at) VALUES (%s, %s, %s, %s, %s, NULL, now()) "
        "ON CONFLICT (anchor_id, tsa_url) DO UPDATE SET tsa_name = excluded.tsa_name, "
        "token = excluded.token, gen_time = excluded.gen_time, last_error = NULL, "
        "last_error_kind = NULL, attempted_at = excluded.attempted_at",
        (anchor_id, tsa_url, tsa_name, token, gen_time),
    )


def save_error(
    conn: psycopg.Connection, anchor_id: int, *, tsa_url: str, error: str, kind: str = "other"
) -> None:
    """The TSA's failure and its kind (evidence/timestamp.py error_kind), unless it
    already granted a token for this root (kept)."""
    conn.execute(
        "INSERT INTO anchor_tokens (anchor_id, tsa_url, last_error, last_error_kind, "
        "attempted_at) VALUES (%s, %s, %s, %s, now()) ON CONFLICT (anchor_id, tsa_url) "
        "DO UPDATE SET last_error = excluded.last_error, "
        "last_error_kind = excluded.last_error_kind, attempted_at = excluded.attempted_at "
        "WHERE anchor_tokens.token IS NULL",
        (anchor_id, tsa_url, error, kind),
    )
