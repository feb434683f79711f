"""Building an evidence bundle (`ingest-server report --bundle`) for a large plant: time and
peak memory, the old in-memory build against the streamed one.

    .venv/bin/python bench/bundle_build.py [--quick] [--old-ref REF] [--keep-going]

Full: the KPI bench's `big` plant (bench/kpi_query.py: 100 equipment, 23 meters, 323
series every 10 s, about 2.8 M samples a day) loaded for 10 days into an embedded
PostgreSQL (its loader, by import: no MQTT, no ingest server; these samples are v1, no
batch ids), about 10 minutes here (2 cores). `--quick`: 10 equipment for 3 days, about
a minute. Each build runs in a child process of its own, in the report's snapshot as
the CLI does (`make_report`, then `collect` + `write`), and is timed from `collect` on:

    1 day   old (the code at --old-ref, default d0c2de9: every sample a Python tuple)
    1 day   new (evidence/bundle.py now: streamed, a row group at a time)
    3 days  new
    10 days new            (quick: 1 old, 1 new, 2 new, 3 new)

For each: seconds, samples per second, the child's peak RSS (VmHWM, reset after the
report was made, so it is the bundle's), the bundle's bytes per sample. The old and new
1-day bundles must hold the same members byte for byte (their manifests' SHA-256s),
else the run fails. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import kpi_query as kq  # noqa: E402  (the KPI bench's plant and loader)
import psycopg  # noqa: E402

OLD_REF = "d0c2de9"  # issue 17, round 1: the bundle built in memory


def old_bundle_module(ref: str) -> types.ModuleType:
    """evidence/bundle.py and repo/bundle.py as committed at `ref`, loaded beside today's."""

    def source(path: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{path}"],
                              check=True, capture_output=True, text=True).stdout  # fmt: skip

    repo = types.ModuleType("_old_repo_bundle")
    sys.modules[repo.__name__] = repo
    exec(compile(source("ingest_server/repo/bundle.py"), "old repo/bundle.py", "exec"),
         repo.__dict__)  # fmt: skip
    ev = types.ModuleType("_old_evidence_bundle")
    sys.modules[ev.__name__] = ev
    text = source("ingest_server/evidence/bundle.py").replace(
        "from ingest_server.repo import anchors, bundle, ledger, reports",
        "from ingest_server.repo import anchors, ledger, reports\n"
        "import _old_repo_bundle as bundle",
    )
    exec(compile(text, "old evidence/bundle.py", "exec"), ev.__dict__)
    return ev


def _hwm_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def child(dsn: str, way: str, days: int, out: Path, ref: str) -> dict[str, Any]:
    """One build, in this (child) process: the report, then its bundle timed."""
    from ingest_server.evidence import bundle as new  # noqa: PLC0415
    from ingest_server.evidence.keys import load_or_create_key  # noqa: PLC0415
    from ingest_server.evidence.report import Request, make_report  # noqa: PLC0415

    mod = old_bundle_module(ref) if way == "old" else new
    key = load_or_create_key(out.with_suffix(".pem"))
    last = kq.FIRST_DAY + dt.timedelta(days=days - 1)
    t0 = dt.datetime.combine(kq.FIRST_DAY, dt.time(), tzinfo=ZoneInfo(kq.TZ))
    with psycopg.connect(dsn) as conn, new.one_snapshot(conn):
        doc = make_report(conn, Request("big", kq.FIRST_DAY, last), key=key,
                          as_of=t0 + dt.timedelta(days=days))  # fmt: skip
        report = (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode()
        reset = True
        try:  # the peak from here on: the bundle's, not the report's
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            reset = False
        base_kb = _hwm_kb()
        started = time.perf_counter()
        b = mod.collect(conn, doc, report)
        collected = time.perf_counter()
        mod.write(out, b)
        done = time.perf_counter()
    return {
        "way": way, "days": days, "samples": b.samples, "bytes": out.stat().st_size,
        "collect_s": collected - started, "write_s": done - collected, "build_s": done - started,
        "peak_rss_mb": _hwm_kb() / 1024, "hwm_reset": reset, "rss_before_mb": base_kb / 1024,
        "members": {m["name"]: m["sha256"] for m in b.manifest["members"]},
    }  # fmt: skip


def build(dsn: str, way: str, days: int, tmp: Path, ref: str) -> dict[str, Any]:
    out = tmp / f"bundle-{way}-{days}d.zip"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", dsn, way, str(days), str(out), ref],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{way} build of {days} days failed:\n{proc.stderr[-4000:]}")
    got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out.unlink()
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10 equipment, 3 days: about a minute")
    ap.add_argument("--old-ref", default=OLD_REF, help="git ref of the old (in-memory) build")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        dsn, way, days, out, ref = args.child
        print(json.dumps(child(dsn, way, int(days), Path(out), ref)))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n_eq, spans = (10, (1, 2, 3)) if args.quick else (100, (1, 3, 10))
    print(f"{'quick' if args.quick else 'full'} run: `big`, {n_eq} equipment, loaded for "
          f"{spans[-1]} days from {kq.FIRST_DAY}, every series every {kq.STEP_S} s")  # fmt: skip
    runs: list[dict[str, Any]] = []
    with kq.database(argparse.Namespace(dsn=None)) as db, \
            tempfile.TemporaryDirectory(prefix="fe-bench-bundle-") as tmp:  # fmt: skip
        ld = kq.load(db.dsn, [kq.plant("big", n_eq)], spans[-1], raw_all=True)
        print(f"loaded {ld.rows['samples']:,} samples in {ld.load_s:.1f} s")
        db.restart_with_defaults()
        plan = [("old", spans[0])] + [("new", d) for d in spans]
        for way, days in plan:
            r = build(db.dsn, way, days, Path(tmp), args.old_ref)
            runs.append(r)
            print(f"  {way:<3} {days:>2} d  {r['samples']:>12,} samples  {r['build_s']:8.1f} s "
                  f"(collect {r['collect_s']:.1f} + write {r['write_s']:.1f})  "
                  f"{r['samples'] / r['build_s']:>10,.0f} samples/s  "
                  f"peak RSS {r['peak_rss_mb']:7.0f} MB  "
                  f"{r['bytes'] / r['samples']:.2f} bytes/sample", flush=True)  # fmt: skip
    old, new1 = runs[0], runs[1]
    report = "report.json"  # signed anew by each build (its own id and time)
    same = {k: v for k, v in old["members"].items() if k != report} == {
        k: v for k, v in new1["members"].items() if k != report
    }
    speed = old["build_s"] / new1["build_s"]
    memory = old["peak_rss_mb"] / new1["peak_rss_mb"]
    print(f"old/new, {spans[0]} day: {speed:.1f}x the time, {memory:.1f}x the peak RSS; "
          f"members byte for byte {'the same' if same else 'DIFFERENT'}")  # fmt: skip
    last = runs[-1]
    per_sample_s = last["build_s"] / last["samples"]
    month = 30 * 86400 // kq.STEP_S * 323  # the 100-machine plant's month of samples
    print(f"at the {spans[-1]}-day rate, a 100-machine month ({month:,} samples): "
          f"about {per_sample_s * month:.0f} s")  # fmt: skip
    if not same:
        raise SystemExit("the old and new bundles differ: " + json.dumps(
            {k: (old["members"].get(k), new1["members"].get(k)) for k in old["members"]
             if k != report and old["members"].get(k) != new1["members"].get(k)}))  # fmt: skip
    figures: dict[str, Any] = {}
    for r in runs:
        tag = f"{r['way']}_{r['days']}d"
        figures |= {f"{tag}_s": round(r["build_s"], 2),
                    f"{tag}_samples_per_s": round(r["samples"] / r["build_s"]),
                    f"{tag}_peak_rss_mb": round(r["peak_rss_mb"]),
                    f"{tag}_bytes_per_sample": round(r["bytes"] / r["samples"], 3),
                    f"{tag}_samples": r["samples"]}  # fmt: skip
    print(json.dumps({**figures, "old_over_new_time": round(speed, 2),
                      "old_over_new_peak_rss": round(memory, 2), "same_members": same,
                      "month_100_machines_est_s": round(per_sample_s * month),
                      "hwm_reset": all(r["hwm_reset"] for r in runs), "equipment": n_eq,
                      "quick": args.quick, "old_ref": args.old_ref}))  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
