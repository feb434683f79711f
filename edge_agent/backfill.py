"""`edge-agent backfill`: past samples (a history file) through the outbox to the broker.

    HISTORY.jsonl[.gz] --check, pass 1--> a device or tag the config lacks? exit 2,
                                          nothing published
    HISTORY.jsonl[.gz] --read, pass 2--> Sample --seal every batch_max_samples, signed-->
        Outbox (durable; at most `window` batches ahead of the broker)
        --Delivery (no live lane: mqtt.backlog_batches_per_s)--> MqttSink --PUBACK--> deleted
        (contract 2: deleted on the server's ack)

The batches are the agent's own: the same wire format and signature (`agent.Sealer`:
HMAC for contract 1; for contract 2 the gateway's key, chained on from the last batch
the agent sealed into the outbox), a new ``boot``
from the outbox as at every start, ``seq`` from 1, and the birth (then ``online``) before
any data on every connection, all by the agent's own classes (`edge_agent.agent.uplink`).
History is an outage's backlog by nature, so it drains at ``mqtt.backlog_batches_per_s``
and never floods the link or the server. The file is streamed twice and never held:
memory is one batch, disk is the window. The backfill ends when the outbox is empty,
every batch acknowledged by the broker.

Run it while the agent is stopped: it uses the agent's outbox (and publishes what an
earlier run left there, as a start does), MQTT client id and boot counter. Interrupted,
it leaves what it sealed in the outbox for the next `edge-agent run` to publish.

A history line, as `factory-sim history` writes it::

    {"d": device, "t": tag, "role": role, "ts": ISO 8601 with zone, "v": value,
     "q": "good" | "uncertain" | "bad", "s": status text (optional)}

Exceptions::

    HistoryError     the file cannot be read, or names a device or tag the config lacks
    BackfillInterruptedError  stopped (SIGINT/SIGTERM) before every batch was acknowledged
    OutboxError      (edge_agent.outbox) the outbox cannot be used
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import itertools
import json
import logging
import math
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edge_agent.agent import Sealer, open_outbox, uplink
from edge_agent.config import AgentConfig
from edge_agent.contract.sample import DEVICE_STATUS_TAG, Quality, Role, Sample
from edge_agent.delivery import Delivery
from edge_agent.outbox import Outbox
from edge_agent.source import device_tags

logger = logging.getLogger(__name__)

WINDOW_BATCHES = 50  # sealed, unacknowledged batches kept ahead of the broker at most
PROGRESS_EVERY_S = 10.0
_LISTED = 20  # unknown devices and tags named in an error, at most
_QUALITY = {q.value: q for q in Quality}


class HistoryError(Exception):
    """A history file that cannot be backfilled; the message names the line and the fix."""


class BackfillInterruptedError(Exception):
    """Stopped before the broker acknowledged every batch; the rest stays in the outbox."""


@dataclass(frozen=True, slots=True)
class HistoryCheck:
    samples: int
    first_ts: float
    last_ts: float


@dataclass(frozen=True, slots=True)
class BackfillResult:
    samples: int
    batches: int
    boot: int
    seconds: float
    dropped_samples: int  # by outbox.max_bytes: 0 unless it holds less than two batches


# --- reading ----------------------------------------------------------------------------


def _open(path: Path) -> IO[str]:
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_history(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line of a history file, plain or gzip, streamed."""
    try:
        with _open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise HistoryError(f"{path}:{n}: not a JSON line ({exc})") from None
                if not isinstance(obj, dict):
                    raise HistoryError(f"{path}:{n}: a history line is one JSON object")
                yield n, obj
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # BadGzipFile is an OSError
        raise HistoryError(f"{path}: cannot read the history file ({exc})") from None


class SampleReader:
    """History objects to the agent's Samples; the last time string is cached (a poll's
    samples share it)."""

    def __init__(self) -> None:
        self._ts_text = ""
        self._ts = 0.0

    def sample(self, obj: dict[str, Any], where: str) -> Sample:
        try:
            device, tag, ts, value = obj["d"], obj["t"], obj["ts"], obj["v"]
        except KeyError as exc:
            raise HistoryError(
                f"{where}: no {exc.args[0]!r}: a history sample has d, t, ts and v "
                "(as `factory-sim history` writes them)"
            ) from None
        if not (isinstance(device, str) and isinstance(tag, str)):
            raise HistoryError(f"{where}: d and t must be strings (device and tag ids)")
        q = obj.get("q", "good")
        quality = _QUALITY.get(q) if isinstance(q, str) else None
        if quality is None:
            raise HistoryError(f"{where}: quality {q!r}: use good, uncertain or bad")
        status = obj.get("s")
        return Sample(
            device,
            tag,
            self._time(ts, where),
            _value(value, where),
            quality,
            None,
            status if isinstance(status, str) else None,
        )

    def _time(self, ts: Any, where: str) -> float:
        if ts == self._ts_text:
            return self._ts
        if not isinstance(ts, str):
            raise HistoryError(
                f"{where}: ts {ts!r}: give an ISO 8601 time, e.g. 2026-11-24T16:00:00Z"
            )
        try:
            stamp = dt.datetime.fromisoformat(ts)
        except ValueError:
            raise HistoryError(
                f"{where}: ts {ts!r} is not an ISO 8601 time; e.g. 2026-11-24T16:00:00Z"
            ) from None
        if stamp.tzinfo is None:
            raise HistoryError(f"{where}: ts {ts!r} has no time zone; give UTC with a Z")
        self._ts_text, self._ts = ts, stamp.timestamp()
        return self._ts


def _value(v: Any, where: str) -> float | str | None:
    # the agent sends numbers as floats (a Modbus bit as 1.0 or 0.0)
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int):
        return float(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise HistoryError(f"{where}: value {v!r}: give null with q bad instead")
        return v
    if v is None or isinstance(v, str):
        return v
    raise HistoryError(f"{where}: value {v!r}: a number, a string or null")


# --- checking ---------------------------------------------------------------------------


def tag_roles(config: AgentConfig) -> dict[tuple[str, str], Role]:
    """(device, tag) -> role for every tag of the config, device status included."""
    out: dict[tuple[str, str], Role] = {}
    for d in config.devices:
        out.update(((d.id, t.tag), t.role) for t in device_tags(d))
        out[(d.id, DEVICE_STATUS_TAG)] = Role.DEVICE_STATUS
    return out


def check_history(path: Path, config: AgentConfig, config_path: Path | str) -> HistoryCheck:
    """Read the whole file once; HistoryError unless every line is a sample of a device
    and tag the config has, with the config's role."""
    roles = tag_roles(config)
    devices = {d for d, _ in roles}
    unknown: dict[tuple[str, str], list[int]] = {}  # -> [first line, samples]
    mismatched: dict[tuple[str, str], tuple[int, str, str]] = {}
    reader = SampleReader()
    n, first, last = 0, math.inf, -math.inf
    for line, obj in read_history(path):
        s = reader.sample(obj, f"{path}:{line}")
        n += 1
        first, last = min(first, s.ts), max(last, s.ts)
        key = (s.device, s.tag)
        role = roles.get(key)
        if role is None:
            seen = unknown.setdefault(key, [line, 0])
            seen[1] += 1
        elif "role" in obj and obj["role"] != role.value and key not in mismatched:
            mismatched[key] = (line, str(obj["role"]), role.value)
    if n == 0:
        raise HistoryError(f"{path}: no samples in the file")
    problems = []
    for (device, tag), (line, count) in sorted(unknown.items(), key=lambda kv: kv[1][0]):
        what = f"device {device!r}" if device not in devices else f"tag {tag!r} of {device!r}"
        where = f" (tag {tag!r})" if device not in devices else ""
        problems.append(f"{what}{where}: {count} sample(s), first at line {line}")
    for (device, tag), (line, got, want) in mismatched.items():
        problems.append(
            f"tag {tag!r} of {device!r}: role {got!r} at line {line}, the config says {want!r}"
        )
    if problems:
        listed = problems[:_LISTED]
        if len(problems) > _LISTED:
            listed.append(f"... and {len(problems) - _LISTED} more")
        raise HistoryError(
            f"{path}: does not fit the agent config {config_path}; nothing was published:\n"
            + "".join(f"  - {p}\n" for p in listed)
            + "Backfill with the agent config of the plant the history was written for "
            "(`factory-sim agent-config --scenario SCENARIO` for a simulated one), or add "
            "these devices and tags to the config with their roles."
        )
    return HistoryCheck(n, first, last)


# --- backfilling ------------------------------------------------------------------------


@dataclass(slots=True)
class _Lane:
    """What one run publishes through."""

    outbox: Outbox
    delivery: Delivery
    task: asyncio.Task[None]  # delivery.run()
    sealer: Sealer
    boot: int
    stop: asyncio.Event


class Backfill:
    """Feeds one history file through the outbox and delivery; `run` once."""

    def __init__(
        self,
        config: AgentConfig,
        history: Path,
        *,
        config_path: Path | str = "the agent config",
        window: int = WINDOW_BATCHES,
    ) -> None:
        self.config = config
        self.history = Path(history)
        self.config_path = config_path
        self.window = window
        self.samples = 0
        self.batches = 0
        self.dropped_samples = 0
        self._total = 0
        self._said_at = 0.0

    async def run(self, stop: asyncio.Event | None = None) -> BackfillResult:
        started = time.monotonic()
        cfg = self.config
        checked = await asyncio.to_thread(check_history, self.history, cfg, self.config_path)
        self._total = checked.samples
        outbox = await asyncio.to_thread(open_outbox, cfg)
        try:
            sealer = await asyncio.to_thread(Sealer, cfg, outbox)
            boot = await asyncio.to_thread(outbox.start_boot)
            left = await asyncio.to_thread(outbox.stats)
            logger.info(
                "backfill %s: %d samples from %s to %s, boot %d; the outbox holds %d earlier "
                "batch(es), published too",
                self.history,
                checked.samples,
                _iso(checked.first_ts),
                _iso(checked.last_ts),
                boot,
                left.batches,
            )
            sink, delivery = uplink(cfg, outbox, sealer=sealer, boot=boot, live=False)
            await sink.start()
            task = asyncio.create_task(delivery.run(), name="delivery")
            lane = _Lane(outbox, delivery, task, sealer, boot, stop or asyncio.Event())
            try:
                await self._feed(lane)
                await self._until_empty(lane, room=False)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await sink.stop()
        finally:
            await asyncio.to_thread(outbox.close)
        return BackfillResult(
            self.samples, self.batches, boot, time.monotonic() - started, self.dropped_samples
        )

    async def _feed(self, lane: _Lane) -> None:
        seq = 0
        with contextlib.closing(self._samples()) as samples:
            while True:
                if lane.stop.is_set():
                    left = await asyncio.to_thread(lane.outbox.stats)
                    raise self._interrupted(lane, left.batches)
                await self._until_empty(lane, room=True)
                sealed, last = await asyncio.to_thread(self._seal, samples, lane, seq + 1)
                if sealed == 0:
                    return
                self.batches += last - seq
                seq = last
                self.samples += sealed
                lane.delivery.sealed((lane.boot, seq))

    def _samples(self) -> Generator[Sample, None, None]:
        reader = SampleReader()
        for line, obj in read_history(self.history):
            yield reader.sample(obj, f"{self.history}:{line}")

    def _seal(self, samples: Iterator[Sample], lane: _Lane, seq: int) -> tuple[int, int]:
        """Read the next batch, sign it and append it to the outbox (in a thread);
        returns the samples sealed and the last seq used (a contract-2 batch over
        mqtt.batch_max_bytes takes several)."""
        batch = list(itertools.islice(samples, self.config.mqtt.batch_max_samples))
        if not batch:
            return 0, seq - 1
        rows = lane.sealer.seal(lane.boot, seq, batch)
        for dropped in lane.outbox.append_many(lane.boot, time.time(), rows):
            self.dropped_samples += dropped.samples  # the outbox has logged it
        lane.sealer.sealed(rows)
        return len(batch), rows[-1][0]

    async def _until_empty(self, lane: _Lane, *, room: bool) -> None:
        """Wait until the broker has acknowledged every batch in the outbox, or with
        `room` until there is room for one more: fewer than `window` batches and half of
        outbox.max_bytes, so that nothing is ever dropped to make room."""
        outbox, delivery = lane.outbox, lane.delivery
        while True:
            acked = delivery.acked
            stats = await asyncio.to_thread(outbox.stats)
            if stats.batches == 0 or (
                room and stats.batches < self.window and stats.bytes < outbox.max_bytes // 2
            ):
                return
            if lane.stop.is_set():
                raise self._interrupted(lane, stats.batches)
            await delivery.wait_acked(acked, timeout_s=1.0)
            if lane.task.done():  # the delivery died: the outbox failed under it, or a bug
                lane.task.result()
                raise RuntimeError("the delivery task ended")
            self._progress(delivery, stats.batches)

    def _interrupted(self, lane: _Lane, left: int) -> BackfillInterruptedError:
        return BackfillInterruptedError(
            f"stopped: {self.samples} of {self._total} samples sealed, "
            f"{lane.delivery.acked} batch(es) acknowledged; the {left} batch(es) left in the "
            "outbox are published by the next `edge-agent run` or backfill"
        )

    def _progress(self, delivery: Delivery, in_outbox: int) -> None:
        now = time.monotonic()
        if now - self._said_at < PROGRESS_EVERY_S:
            return
        self._said_at = now
        logger.info(
            "backfill: %d of %d samples sealed, %d batch(es) acknowledged, %d in the outbox%s",
            self.samples,
            self._total,
            delivery.acked,
            in_outbox,
            "" if delivery.sink.connected.is_set() else "; waiting for the broker",
        )


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")
