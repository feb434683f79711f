"""`factory-demo` (and `make demo`): the whole pipeline on this machine.

    simulators --OPC UA/Modbus--> edge-agent --MQTT--> Mosquitto --> ingest-server --> PostgreSQL

Starts, each as its own process and all on 127.0.0.1: the demo plant's simulators (free
ports), Mosquitto on a free port (or --mqtt URL for a broker of yours), the ingestion
server on its embedded PostgreSQL (in the work directory), and the edge agent. It prints
a live summary (samples/s, devices online, each machine's state) every few seconds and
stops everything cleanly on Ctrl-C, SIGTERM or SIGHUP (or after --duration seconds).

Stopping is the demo's job, in order: the agent first (it flushes to a broker and a
server still running), the ingestion server (which stops its embedded PostgreSQL)
before the broker. So every process it starts runs in a process group of its own: a
Ctrl-C at the terminal reaches the demo alone, not every process at once. A second
signal while stopping is ignored; a process that does not stop in 20 s is killed, and
a database its killed server left running is stopped too.

First it backfills the plant's past (`--history-days`, 30 by default): `factory-sim
history` simulates it, `edge-agent backfill` sends it through the agent's own outbox and
delivery, and the live plant then goes on from the counters the history left.

A factory at rest is a dull demo: at night, on a Sunday or a holiday every machine is
OFF. Unless told `--now`, the demo plant then works around the clock (three shifts,
every day), and says so; the registry it loads has the same calendar, so the KPIs agree
with the plant.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from edge_agent.contract.yaml12 import read_yaml_file
from simulators.calendar import ShiftCalendar
from simulators.ports import pick_free_port
from simulators.scenario import default_scenario_path, load_scenario

ROUND_THE_CLOCK = [
    {"name": "early", "start": "00:00", "end": "08:00"},
    {"name": "day", "start": "08:00", "end": "16:00"},
    {"name": "swing", "start": "16:00", "end": "00:00"},
]


def off_shift(scenario_path: Path, now: dt.datetime | None = None) -> bool:
    scenario = load_scenario(scenario_path)
    cal = ShiftCalendar(scenario.calendar, scenario.tz)
    moment = now or dt.datetime.now(scenario.tz)
    return not cal.in_shift(moment.timestamp())


def continue_from(scenario_path: Path, truth: Path, out: Path) -> Path:
    """The scenario with its counters where the history left them (meter readings, part
    counters), so the live plant goes on from the backfilled past instead of jumping back
    to the scenario's first readings (which the server would flag as resets)."""
    from simulators.truth import read_truth  # noqa: PLC0415

    summary = next(r for r in reversed(list(read_truth(truth))) if r["type"] == "summary")
    doc: dict[str, Any] = read_yaml_file(scenario_path)
    for m in doc.get("meters", []):
        m["initial"] = summary["meters"][m["id"]]["reading"]
    for e in doc.get("equipment", []):
        made = summary["equipment"][e["id"]]
        was = e.get("counters") or {}
        e["counters"] = {  # a new dict: YAML merge keys may share the old one
            "completed": (int(was.get("completed", 0)) + made["parts_completed"]) % 2**32,
            "good": (int(was.get("good", 0)) + made["parts_good"]) % 2**32,
        }
    out.write_text(
        "# The demo plant going on from its backfilled history (written by factory-demo).\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    return out


def round_the_clock(scenario_path: Path, out: Path) -> Path:
    """The scenario with a plant that works three shifts every day, no holidays."""
    doc: dict[str, Any] = read_yaml_file(scenario_path)
    doc["calendar"] = {
        "workdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "shifts": ROUND_THE_CLOCK,
    }
    out.write_text(
        "# The demo plant working around the clock (written by factory-demo).\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    return out


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.workdir.resolve()
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.bin = Path(sys.executable).parent

    def _tool(self, name: str) -> list[str]:
        exe = self.bin / name
        if exe.exists():
            return [str(exe)]
        module = {
            "factory-sim": "simulators.cli",
            "edge-agent": "edge_agent.cli",
            "ingest-server": "ingest_server.cli.main",
        }[name]
        return [sys.executable, "-m", module]

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = self.work / "logs" / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, process_group=0)
        self.procs.append((name, proc))
        return proc

    def wait_file(self, path: Path, name: str, timeout: float = 60) -> None:
        proc = dict(self.procs)[name]
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} stopped: see {self.work / 'logs' / (name + '.log')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start within {timeout:.0f} s")
            time.sleep(0.1)

    def run_tool(self, cmd: list[str], *, unless: str | None = None) -> None:
        """Run a command to its end; a failure whose message has `unless` is no failure.
        Interrupted, the demo stops it with SIGTERM, not SIGKILL (subprocess.run's way),
        so that it stops the embedded PostgreSQL it may have started."""
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0
        )
        try:
            _, stderr = proc.communicate()
        except BaseException:
            _terminate(proc)
            raise
        if proc.returncode != 0 and not (unless and unless in stderr):
            raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{stderr.strip()}")

    def gateway_keys(self) -> tuple[Path, Path, str]:
        """(HMAC key file, the gateway's own key file, its public key). The demo gateway
        speaks contract 2: it signs with a key of its own and the server enrols only the
        public key (docs/deploy.md); the registry import still issues the HMAC key."""
        key = self.work / "keys" / "gateway.key"
        if not key.exists():
            key.write_bytes(secrets.token_hex(32).encode() + b"\n")
        key.chmod(0o600)
        own_key = self.work / "keys" / "gateway.ed25519"
        if not own_key.exists():
            self.run_tool([*self._tool("edge-agent"), "keys", "init", "--key", str(own_key)])
        out = subprocess.run(
            [*self._tool("edge-agent"), "keys", "show", "--key", str(own_key)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        public = next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                      if ln.startswith("public key:"))  # fmt: skip
        return key, own_key, public

    def api(self, pg_dir: Path, enterprise: str) -> str:
        """The HTTP API on a free port, and a login for each role (passwords in
        WORKDIR/logins.json, mode 600, kept across runs)."""
        logins_file = self.work / "logins.json"
        logins: dict[str, str] = json.loads(logins_file.read_text()) if logins_file.exists() else {}
        tool = self._tool("ingest-server")
        for name, role in (("demo-admin", "admin"), ("demo-enterprise", "enterprise"),
                           ("demo-verifier", "verifier")):  # fmt: skip
            scope = [] if role == "admin" else ["--enterprise", enterprise]
            self.run_tool(
                [*tool, "accounts", "add", "--data-dir", str(pg_dir), name, "--role", role,
                 *scope],
                unless="exists already",
            )  # fmt: skip
            password = logins.setdefault(name, secrets.token_urlsafe(12))
            secret = self.work / "keys" / f"{name}.password"
            secret.write_text(password + "\n", encoding="utf-8")
            secret.chmod(0o600)
            self.run_tool(
                [*tool, "accounts", "password", "--data-dir", str(pg_dir), name,
                 "--password-file", str(secret)]
            )  # fmt: skip
        logins_file.write_text(json.dumps(logins, indent=1), encoding="utf-8")
        logins_file.chmod(0o600)
        port = pick_free_port("127.0.0.1")
        self.start(
            "ingest-api",
            [*tool, "api", "--data-dir", str(pg_dir), "--listen", f"127.0.0.1:{port}"],
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/openapi.json", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or dict(self.procs)["ingest-api"].poll() is not None:
                    raise RuntimeError(f"the API did not start: see {self.work / 'logs'}") from None
                time.sleep(0.3)
        print(f"  console     {url}/   (web console: log in with one of these)")
        print(f"  API         {url}/docs (POST /api/v1/login with a name and password)")
        for name, password in logins.items():
            print(f"  login       {name:<16} {password}")
        return url

    def stop_all(self) -> None:
        # the agent first, so that it flushes to a broker and server still running
        for name, proc in reversed(self.procs):
            if proc.poll() is None and not _terminate(proc):
                print(f"  {name} did not stop in 20 s: killed", flush=True)
            print(f"  stopped {name}", flush=True)
        self._stop_orphaned_database()

    def _stop_orphaned_database(self) -> None:
        """A server killed above (or a demo killed before) leaves its PostgreSQL
        running with no one to stop it."""
        from ingest_server.db.embedded_pg import EmbeddedPostgres  # noqa: PLC0415

        pg = EmbeddedPostgres(self.work / "db")
        if (self.work / "db").exists() and pg.running() and pg.owner() is None:
            pg.stop()
            print("  stopped the database a killed ingest-server left running", flush=True)

    def broker(self) -> str:
        if self.args.mqtt:
            return str(self.args.mqtt)
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(mosquitto).exists():
            raise RuntimeError(
                "mosquitto is not installed: `make demo` installs it, or pass --mqtt"
            )
        port = pick_free_port("127.0.0.1")
        conf = self.work / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            + ("user root\n" if os.geteuid() == 0 else ""),
            encoding="utf-8",
        )
        self.start("mosquitto", [mosquitto, "-c", str(conf)])
        time.sleep(0.3)
        return f"mqtt://127.0.0.1:{port}"

    def run(self) -> int:
        args = self.args
        for sub in ("logs", "keys"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        scenario_path: Path = args.scenario
        if not args.now and off_shift(scenario_path):
            scenario_path = round_the_clock(scenario_path, self.work / "scenario.yaml")
            print("It is off shift at the plant: the demo plant works around the clock today.")
        key, own_key, public_key = self.gateway_keys()
        mqtt_url = self.broker()
        print(f"  broker      {mqtt_url}")
        history = None
        if args.history_days > 0:
            history = self.work / "history.jsonl.gz"
            truth = self.work / "history-truth.jsonl"
            print(f"  history     simulating the last {args.history_days:g} days ...", flush=True)
            t0 = time.monotonic()
            self.run_tool(
                [*self._tool("factory-sim"), "history", "--scenario", str(scenario_path),
                 "--days", str(args.history_days), "--out", str(history), "--truth", str(truth)]
            )  # fmt: skip
            print(f"              done in {time.monotonic() - t0:.0f} s", flush=True)
            scenario_path = continue_from(scenario_path, truth, self.work / "scenario-live.yaml")

        ready = self.work / "sim-ready.json"
        ready.unlink(missing_ok=True)
        self.start(
            "factory-sim",
            [*self._tool("factory-sim"), "run", "--scenario", str(scenario_path), "--free-ports",
             "--ready-file", str(ready), "--truth", str(self.work / "truth.jsonl")],
        )  # fmt: skip
        self.wait_file(ready, "factory-sim")
        print(f"  simulators  {', '.join(json.loads(ready.read_text())['opcua'].values())} ...")

        registry = self.work / "registry.yaml"
        self.run_tool(
            [*self._tool("factory-sim"), "registry", "--scenario", str(scenario_path),
             "--out", str(registry)]
        )  # fmt: skip
        pg_dir = self.work / "db"
        self.run_tool(
            [*self._tool("ingest-server"), "registry", "import", str(registry),
             "--key", f"gw-01={key}", "--data-dir", str(pg_dir)]
        )  # fmt: skip
        site = load_scenario(scenario_path).site.id
        enterprise = load_scenario(scenario_path).enterprise.id
        self.run_tool(
            [*self._tool("ingest-server"), "gateway", "enroll", enterprise, site, "gw-01",
             "--public-key", public_key, "--data-dir", str(pg_dir)]
        )  # fmt: skip
        server_ready = self.work / "server-ready.json"
        server_ready.unlink(missing_ok=True)
        self.start(
            "ingest-server",
            [*self._tool("ingest-server"), "run", "--data-dir", str(pg_dir), "--mqtt", mqtt_url,
             "--client-id", "ingest-demo", "--ready-file", str(server_ready)],
        )  # fmt: skip
        self.wait_file(server_ready, "ingest-server")
        dsn = json.loads(server_ready.read_text())["dsn"]
        print(f"  database    {dsn} (embedded, in {pg_dir})")

        agent_cfg = self.work / "agent.yaml"
        self.run_tool(
            [*self._tool("factory-sim"), "agent-config", "--scenario", str(scenario_path),
             "--ready-file", str(ready), "--mqtt-url", mqtt_url,
             "--outbox", str(self.work / "outbox.db"), "--contract", "2",
             "--key-file", str(own_key), "--out", str(agent_cfg)]
        )  # fmt: skip
        if history is not None:
            self.backfill(agent_cfg, history, dsn)
            n = enter_production(dsn, enterprise)
            print(f"  production  {n} days of output and value added entered (illustrative)")
        self.start("edge-agent", [*self._tool("edge-agent"), "run", str(agent_cfg)])
        print(f"  agent       {agent_cfg}")
        print(f"  logs        {self.work / 'logs'}")
        print(f"  KPIs        ingest-server report --data-dir {pg_dir} --enterprise "
              f"{enterprise} --from DATE --to DATE --html r.html")  # fmt: skip
        self.api(pg_dir, enterprise)
        print("Press Ctrl-C to stop.\n", flush=True)
        return self.watch(dsn)

    def backfill(self, agent_cfg: Path, history: Path, dsn: str) -> None:
        """The history through the agent's own outbox and delivery (`edge-agent
        backfill`), faster than its default backlog rate, with progress."""
        import psycopg  # noqa: PLC0415

        doc: dict[str, Any] = read_yaml_file(agent_cfg)
        doc.setdefault("mqtt", {})["backlog_batches_per_s"] = 200
        fast = self.work / "agent-backfill.yaml"
        fast.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), "utf-8")
        proc = self.start(
            "backfill", [*self._tool("edge-agent"), "backfill", "--config", str(fast), str(history)]
        )
        t0 = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            while proc.poll() is None:
                # progress every few seconds, whatever the live summary's interval
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(min(self.args.every, 5.0))
                if proc.poll() is not None:
                    break
                n = live_summary(conn)["samples"]
                took = time.monotonic() - t0
                if n == 0:  # the agent first queues the whole history in its outbox
                    print(f"  backfill    queueing the history in the agent's outbox, {took:.0f} s",
                          flush=True)  # fmt: skip
                else:
                    print(f"  backfill    {n:,} samples stored, {took:.0f} s", flush=True)
        self.procs.remove(("backfill", proc))
        if proc.returncode != 0:
            raise RuntimeError(f"the backfill failed: see {self.work / 'logs' / 'backfill.log'}")
        print(f"  backfill    done in {time.monotonic() - t0:.0f} s: "
              + (self.work / "logs" / "backfill.log").read_text().strip().splitlines()[-1],
              flush=True)  # fmt: skip
        # the broker has it all; the server may still be storing the last batches
        with psycopg.connect(dsn, autocommit=True) as conn:
            last, deadline = -1, time.monotonic() + 120
            while time.monotonic() < deadline:
                n = live_summary(conn)["samples"]
                if n == last:
                    break
                last = n
                time.sleep(2)
        print(f"  stored      {last:,} samples", flush=True)

    def watch(self, dsn: str) -> int:
        import psycopg  # noqa: PLC0415

        deadline = time.monotonic() + self.args.duration if self.args.duration else None
        last_n, last_t = 0, time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(self.args.every)
                for name, proc in self.procs:
                    if proc.poll() is not None:
                        print(f"{name} stopped unexpectedly: see {self.work / 'logs'}")
                        return 1
                summary = live_summary(conn)
                now = time.monotonic()
                rate = (summary["samples"] - last_n) / (now - last_t)
                last_n, last_t = summary["samples"], now
                print(format_summary(summary, rate), flush=True)
        return 0


# the demo's value added per good part, in 10,000 CNY: an illustrative figure
VALUE_ADDED_PER_PART = 0.02
PRODUCTION_NOTE = (
    "factory-demo: good parts of the final process (assembly) per day as counted by its "
    "machines; value added at 200 CNY a part (illustrative)"
)


def enter_production(dsn: str, enterprise: str) -> int:
    """What an enterprise would enter from its MES and books for the intensity KPIs: per
    day of the backfilled history before today, the good parts of the final process and
    a value added. Days already entered are left as they are."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(
            """
            INSERT INTO production_entries (enterprise_id, period_from, period_to, output,
                output_unit, value_added_10k_cny, note, entered_by)
            SELECT %(e)s, d, d, sum(delta), '件', sum(delta) * %(va)s, %(note)s, 'factory-demo'
            FROM (
                SELECT (ch.bucket AT TIME ZONE s.timezone)::date AS d, ch.delta,
                       (now() AT TIME ZONE s.timezone)::date AS today
                FROM counter_hourly ch
                JOIN series se USING (series_id)
                JOIN gateways g ON g.gid = se.gid
                JOIN sites s ON s.enterprise_id = g.enterprise_id AND s.id = g.site_id
                JOIN equipment e ON e.enterprise_id = g.enterprise_id AND e.site_id = g.site_id
                     AND e.gateway_id = g.id AND e.device = se.device
                WHERE g.enterprise_id = %(e)s AND e.process_id = 'assembly'
                  AND se.role = 'part_count_good'
            ) x
            WHERE d < today
              AND NOT EXISTS (SELECT 1 FROM production_entries p
                              WHERE p.enterprise_id = %(e)s AND p.period_from = x.d)
            GROUP BY d HAVING sum(delta) > 0
            """,
            {"e": enterprise, "va": VALUE_ADDED_PER_PART, "note": PRODUCTION_NOTE},
        )
        return cur.rowcount


def live_summary(conn: Any) -> dict[str, Any]:
    row = conn.execute(
        "SELECT coalesce(sum(samples), 0), count(*), "
        "coalesce(sum(samples) FILTER (WHERE contract = 2), 0) FROM batches"
    ).fetchone()
    states = conn.execute(
        'SELECT device, state FROM state_intervals WHERE "end" IS NULL ORDER BY device'
    ).fetchall()
    online = conn.execute(
        """
        SELECT count(*) FILTER (WHERE last = 'online'), count(*) FROM (
            SELECT DISTINCT ON (se.series_id) s.text AS last
            FROM series se JOIN samples s USING (series_id)
            WHERE se.role = 'device_status'
            ORDER BY se.series_id, s.ts DESC) d
        """
    ).fetchone()
    dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    return {
        "samples": int(row[0]),
        "batches": int(row[1]),
        "signed": int(row[2]),  # in batches the gateway signed with its own key (contract 2)
        "online": int(online[0]),
        "devices": int(online[1]),
        "states": dict(states),
        "dead_letters": int(dead[0]),
    }


def format_summary(s: dict[str, Any], rate: float) -> str:
    by_state: dict[str, list[str]] = {}
    for device, state in s["states"].items():
        by_state.setdefault(state, []).append(device)
    states = "; ".join(f"{st} {' '.join(devs)}" for st, devs in sorted(by_state.items()))
    return (
        f"{dt.datetime.now():%H:%M:%S} {rate:7.0f} samples/s, {s['samples']:,} stored, "
        f"{s['signed'] / max(1, s['samples']):.0%} gateway-signed, "
        f"{s['online']}/{s['devices']} devices online, {s['dead_letters']} dead letters\n"
        f"         {states}"
    )


def _terminate(proc: subprocess.Popen[Any], timeout_s: float = 20) -> bool:
    """SIGTERM, then SIGKILL after `timeout_s`; True when it stopped on SIGTERM."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)
        return False


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals_to_exit() -> Iterator[Callable[[], None]]:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) raise KeyboardInterrupt, once.
    Once stopping (after that, or when the function yielded is called), a signal is
    ignored, lest it cut the stopping short and leave processes running."""
    stopping = False

    def _raise(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if stopping:
            print(f"  {signal.Signals(signum).name}: already stopping", flush=True)
            return
        stopping = True
        raise KeyboardInterrupt

    def _stopping() -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, _raise) for s in STOP_SIGNALS}
    try:
        yield _stopping
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="factory-demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", type=Path, default=default_scenario_path())
    ap.add_argument("--workdir", type=Path, default=Path(".demo"))
    ap.add_argument("--mqtt", help="use this broker instead of starting Mosquitto")
    ap.add_argument("--now", action="store_true", help="keep the plant's own calendar")
    ap.add_argument("--duration", type=float, default=0, help="stop after N seconds")
    ap.add_argument("--every", type=float, default=5.0, help="summary every N seconds")
    ap.add_argument(
        "--history-days",
        type=float,
        default=30.0,
        help="backfill this many days of the plant's past first (0: none; default 30)",
    )
    args = ap.parse_args(argv)
    print("factory-evidence demo: simulators -> edge agent -> MQTT -> ingest server -> PostgreSQL")
    demo = Demo(args)
    with _signals_to_exit() as stopping:
        try:
            return demo.run()
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
            return 0
        except RuntimeError as exc:
            print(f"factory-demo: {exc}", file=sys.stderr)
            return 1
        finally:
            stopping()
            demo.stop_all()


if __name__ == "__main__":
    sys.exit(main())
