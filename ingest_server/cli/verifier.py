"""The verifier's commands, light: what runs on a laptop with only the `verify` extra.

    ingest-server verify BUNDLE.zip --trust trust.json [--json] [--lang zh|en]
    ingest-server paper "FE1:..." --bundle BUNDLE.zip --trust trust.json [--json] [--lang zh|en]

`verify` with `--trust` checks an evidence bundle (evidence/offline/ `check_bundle`)
with no database and no network; without `--trust` it is the report verify of
cli/evidence.py (`verify r.json [--dsn ...]`), which defines the same parser (here, so
that its `--help` is one text on both paths). `paper` matches a printed report's scanned
QR text (evidence/qr.py) to the bundle's report, and checks the bundle as `verify` does.

This module imports no database driver, web framework or protocol library, nor any
command module that does: cli/main.py dispatches these two commands (when `verify` has
`--trust`) from here without importing the others.

Exit codes of a bundle check (docs/evidence-verify.md):
    0 pass (every check holds), 3 fail (a check failed), 4 incomplete (none failed, one was
    not checked), 2 bad input (not a bundle, not a trust file, another enterprise's trust
    file, a QR text that does not parse), 1 not used (no database, no network).
"""

from __future__ import annotations

import argparse
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

VERIFY_FAILED = 3  # as the report verify's (cli/evidence.py)
VERIFY_INCOMPLETE = 4
EXIT_CODES = {"pass": 0, "fail": VERIFY_FAILED, "incomplete": VERIFY_INCOMPLETE}
LANGS = ("zh", "en")

_STATUS = {
    "ok": ("通过", "ok"),
    "failed": ("未通过", "FAILED"),
    "not_checked": ("未检查", "not checked"),
}
_CHECK_NAMES = {
    "manifest": ("清单与成员", "manifest and members"),
    "report_signature": ("报告签名", "report signature"),
    "batches": ("批次签名与摘要", "batch signatures and digests"),
    "chain": ("哈希链连续性", "chain continuity"),
    "anchors": ("时间戳锚定", "time-stamp anchoring"),
    "kpis": ("KPI 重新计算", "KPIs recomputed"),
}
_MAX_ROWS = 50  # rows of one list of details printed; the rest are counted


def add_verify_parser(sub: Any) -> None:  # argparse's _SubParsersAction is private
    """`verify`: a report file (with --dsn, recomputed from a database) or, with --trust,
    an evidence bundle checked offline."""
    ver = sub.add_parser(
        "verify",
        help="check a report's signature and recompute it; with --trust, check an evidence "
        "bundle offline",
    )
    ver.add_argument("report", type=Path, help="a report JSON, or with --trust a bundle (zip)")
    ver.add_argument("--dsn", help="recompute every KPI from the raw samples in this database")
    ver.add_argument("--data-dir", type=Path, help="recompute on the embedded server's data")
    ver.add_argument("--public-key", type=Path, help="the server's exported public key (PEM)")
    ver.add_argument(
        "--trust", type=Path,
        help="the verifier's trust file (from the enrolment visit): check the bundle FILE "
        "with no database and no network (exit 0 pass, 3 fail, 4 incomplete, 2 bad input)",
    )  # fmt: skip
    ver.add_argument("--lang", choices=LANGS, help="with --trust: one language (default both)")
    ver.add_argument("--json", action="store_true", help="the verdict as JSON")
    ver.add_argument("-v", "--verbose", action="store_true")


def add_paper_parser(sub: Any) -> None:
    pap = sub.add_parser(
        "paper", help="match a printed report's QR text to a bundle and check the bundle"
    )
    pap.add_argument("qr_text", help="the scanned QR text, FE1:<id>:<digest>:<signature>")
    pap.add_argument("--bundle", type=Path, required=True, help="the evidence bundle (zip)")
    pap.add_argument("--trust", type=Path, required=True, help="the verifier's trust file")
    pap.add_argument("--lang", choices=LANGS, help="one language (default both)")
    pap.add_argument("--json", action="store_true", help="the result as JSON")


def is_light(argv: list[str]) -> bool:
    """Whether the command line asks for a command of this module only: `verify ...
    --trust ...` or `paper ...` (cli/main.py then imports no other command module)."""
    if not argv:
        return False
    if argv[0] == "paper":
        return True
    return argv[0] == "verify" and any(a == "--trust" or a.startswith("--trust=") for a in argv)


# --- verify BUNDLE --trust TRUST ----------------------------------------------------------


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    from ingest_server.evidence.offline import check_bundle  # noqa: PLC0415 (pyarrow: on use)

    if args.trust is None:
        raise ValueError("--lang applies to a bundle checked with --trust / --lang 仅用于 --trust")
    if args.dsn is not None or args.data_dir is not None or args.public_key is not None:
        raise ValueError(
            "--trust checks a bundle offline: it takes no --dsn, --data-dir or --public-key "
            "(the trust file holds the keys) / --trust 离线检查证据包, 不接受 --dsn、--data-dir "
            "或 --public-key (密钥来自信任文件)"
        )
    _need_file(args.report, "证据包", "the bundle")
    _need_file(args.trust, "信任文件", "the trust file")
    verdict = check_bundle(args.report, args.trust)
    result = verdict.as_json()
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1, default=str))
    else:
        _print(_bundle_lines(args.report, args.trust, result), args.lang)
    return EXIT_CODES[verdict.verdict]


def _need_file(path: Path, zh: str, en: str) -> None:
    if not path.is_file():
        raise ValueError(
            f"{en} {path} does not exist or is not a file: give its path / "
            f"{zh} {path} 不存在或不是文件: 请给出其路径"
        )


def _print(lines: Iterable[tuple[str, str]], lang: str | None) -> None:
    """Each (Chinese, English) line: both, or the one language asked for."""
    for zh, en in lines:
        if lang == "zh":
            print(zh)
        elif lang == "en":
            print(en)
        elif zh == en:
            print(zh)
        else:
            print(zh)
            print(en)


def _bundle_lines(bundle: Path, trust: Path, result: dict[str, Any]) -> list[tuple[str, str]]:
    out = [
        (f"证据包   {bundle}", f"bundle   {bundle}"),
        (f"信任文件 {trust}", f"trust    {trust}"),
        ("", ""),
    ]
    for c in result["checks"]:
        zh_status, en_status = _STATUS.get(c["status"], (c["status"], c["status"]))
        zh_name, en_name = _CHECK_NAMES.get(c["name"], (c["name"], c["name"]))
        out.append((f"[{zh_status}] {c['name']} ({zh_name})",
                    f"[{en_status}] {c['name']} ({en_name})"))  # fmt: skip
        out += [(f"    - {r.get('text')}", f"    - {r.get('text_en')}")
                for r in c.get("reasons") or []]  # fmt: skip
        out += [(f"    {zh}", f"    {en}") for zh, en in _details(c["name"], c.get("details"))]
    zh, en = result["text"], result["text_en"]
    out += [("", ""), (f"结论: {zh}", f"Verdict: {en}")]
    return out


def _details(name: str, details: Any) -> list[tuple[str, str]]:
    """A check's details as lines: chain gaps, unanchored days, the edit trail, claimed vs
    recomputed figures where they are; any other detail as `key: value`. Whatever shape a
    detail has, it is shown, never a reason to stop."""
    if not isinstance(details, dict) or not details:
        return []
    out: list[tuple[str, str]] = []
    for key, value in details.items():
        if key == "gaps" and isinstance(value, list):
            out += _gaps(value)
        elif key == "unanchored_days" and isinstance(value, list):
            days = ", ".join(map(str, value)) or "—"
            out.append((f"未锚定的日期: {days}", f"unanchored days: {days}"))
        elif key == "edits" and isinstance(value, list):
            out += _edits(value)
        elif _figures(value):
            out += _figure_rows(key, value)
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            out.append((f"{key} ({len(value)}):", f"{key} ({len(value)}):"))
            out += [(f"  {_kv(x)}", f"  {_kv(x)}") for x in value[:_MAX_ROWS]]
            out += _more(len(value))
        else:
            text = _value(value)
            out.append((f"{key}: {text}", f"{key}: {text}"))
    return out


def _gaps(gaps: list[Any]) -> list[tuple[str, str]]:
    if not gaps:
        return [("哈希链缺口: 无", "chain gaps: none")]
    out = [(f"哈希链缺口 ({len(gaps)}):", f"chain gaps ({len(gaps)}):")]
    for g in gaps[:_MAX_ROWS]:
        if not isinstance(g, dict):
            out.append((f"  {g}", f"  {g}"))
            continue
        secs = g.get("seconds")
        span = "?" if not isinstance(secs, int | float) else f"{secs:.0f} s"
        where = f"{g.get('gateway')} boot {g.get('boot')} seq {g.get('seq')}"
        missing = g.get("missing")
        devices, equipment = _value(g.get("devices")), _value(g.get("equipment"))
        out.append((
            f"  {where}: 缺少 {missing} 个批次, {g.get('from') or '首个批次之前'} 至 "
            f"{g.get('to')} ({span}); 设备 {devices}; 涉及的设备/计量表 {equipment}",
            f"  {where}: {missing} batch(es) missing, {g.get('from') or 'before the first'} "
            f"to {g.get('to')} ({span}); devices {devices}; equipment and meters {equipment}",
        ))  # fmt: skip
    return out + _more(len(gaps))


def _edits(edits: list[Any]) -> list[tuple[str, str]]:
    if not edits:
        return [("属性修改记录: 无", "edit trail: no edits")]
    out = [(f"属性修改记录 ({len(edits)}):", f"edit trail ({len(edits)}):")]
    for e in edits[:_MAX_ROWS]:
        if not isinstance(e, dict):
            out.append((f"  {e}", f"  {e}"))
            continue
        used: set[str] = {"field", "old", "new"}
        when = _first(e, used, "when", "at", "changed_at")
        who = _first(e, used, "who", "account", "by")
        if "kind" in e:  # the registry's other trail: a site, calendar, process, meter, ...
            used |= {"kind", "entity", "trail"}
            what = f"{_value(e['kind'])} {_value(e.get('entity'))}"
        else:
            what = _value(_first(e, used, "equipment", "item", "id"))
        change = zh = f"{_value(e.get('field'))} {_value(e.get('old'))} → {_value(e.get('new'))}"
        if e.get("field") == "*" and e.get("old") is None:  # a row inserted, or removed
            change, zh = f"inserted {_value(e.get('new'))}", f"新增 {_value(e.get('new'))}"
        elif e.get("field") == "*" and e.get("new") is None:
            change, zh = f"removed {_value(e.get('old'))}", f"删除 {_value(e.get('old'))}"
        rest = {k: v for k, v in e.items() if k not in used}
        tail = f" ({_kv(rest)})" if rest else ""
        out.append((f"  {_value(when)} {_value(who)}: {what} {zh}{tail}",
                    f"  {_value(when)} {_value(who)}: {what} {change}{tail}"))  # fmt: skip
    return out + _more(len(edits))


def _first(d: dict[str, Any], used: set[str], *keys: str) -> Any:
    """The value of the first of `keys` that `d` holds (added to `used`), else None."""
    for k in keys:
        if k in d:
            used.add(k)
            return d[k]
    return None


def _figures(value: Any) -> bool:
    """A list of claimed vs recomputed comparisons."""
    return (
        isinstance(value, list) and bool(value)
        and all(isinstance(x, dict) and "claimed" in x and "recomputed" in x for x in value)
    )  # fmt: skip


def _figure_rows(key: str, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = [(f"{key}: 申报值 / 重新计算值 ({len(rows)}):",
            f"{key}: claimed vs recomputed ({len(rows)}):")]  # fmt: skip
    for x in rows[:_MAX_ROWS]:
        item = x.get("item") or x.get("id") or x.get("name") or "?"
        ok = x.get("ok")
        mark_zh = "" if ok is None else ("  一致" if ok else "  不一致")
        mark_en = "" if ok is None else ("  equal" if ok else "  DIFFERENT")
        line = f"  {item!s:<44} {_value(x['claimed']):>16} {_value(x['recomputed']):>16}"
        out.append((line + mark_zh, line + mark_en))
    return out + _more(len(rows))


def _more(n: int) -> list[tuple[str, str]]:
    if n <= _MAX_ROWS:
        return []
    return [(f"  另有 {n - _MAX_ROWS} 项未列出 (--json 列出全部)",
             f"  and {n - _MAX_ROWS} more (--json lists them all)")]  # fmt: skip


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in d.items())


def _value(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, list | tuple):
        return "[" + ", ".join(_value(v) for v in x) + "]"
    if isinstance(x, dict):
        return "{" + _kv(x) + "}"
    return "—" if x is None else str(x)


# --- paper QR --bundle --trust -------------------------------------------------------------


def cmd_paper(args: argparse.Namespace) -> int:
    from ingest_server.evidence.offline import check_bundle  # noqa: PLC0415 (pyarrow: on use)
    from ingest_server.evidence.qr import check_paper, parse_qr_text  # noqa: PLC0415
    from ingest_server.evidence.signature import parse_report  # noqa: PLC0415

    _need_file(args.bundle, "证据包", "the bundle")
    _need_file(args.trust, "信任文件", "the trust file")
    payload = parse_qr_text(args.qr_text)
    try:
        with zipfile.ZipFile(args.bundle) as z:
            data = z.read("report.json")
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(
            f"{args.bundle}: no report.json can be read from it ({exc}): give the bundle "
            "`ingest-server report --bundle` wrote / 无法从证据包读取 report.json"
        ) from None
    doc = parse_report(data, f"{args.bundle}:report.json")
    differences = check_paper(payload, doc)
    verdict = check_bundle(args.bundle, args.trust)
    matches = not differences
    code = EXIT_CODES[verdict.verdict] if matches else VERIFY_FAILED
    if args.json:
        print(json.dumps({
            "paper_matches": matches, "differences": differences,
            "report_id": payload.report_id, "bundle": verdict.as_json(),
            "ok": matches and verdict.verdict == "pass",
        }, ensure_ascii=False, indent=1, default=str))  # fmt: skip
        return code
    lines = [(f"纸质报告 {payload.report_id}", f"paper report {payload.report_id}")]
    if matches:
        lines.append((
            "纸质报告与证据包中的报告一致 (编号、签名内容的摘要、签名均相同)",
            "the paper is a copy of the bundle's report (same id, same digest of the signed "
            "content, same signature)",
        ))  # fmt: skip
    else:
        lines.append(("纸质报告与证据包中的报告不一致:", "the paper is NOT the bundle's report:"))
        lines += [(f"    - {d}", f"    - {d}") for d in differences]
    zh, en = verdict.text
    lines.append((f"证据包检查: {zh}", f"bundle check: {en}"))
    if matches and verdict.verdict == "pass":
        lines.append(("结论: 通过", "Verdict: PASS"))
    else:
        lines.append(("结论: 不通过或不完整, 见上 (ingest-server verify 列出每项检查)",
                      "Verdict: not a pass, see above (ingest-server verify lists every "
                      "check)"))  # fmt: skip
    _print(lines, args.lang)
    return code
