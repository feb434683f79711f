"""The enterprise's declarations a report states, pure: the meter register (each meter's
nameplate and calibration certificate, and the certificate's state at the period's end,
GB 17167: docs/kpi.md#meter-register) and the declaration (承诺) it signs.

They are declared, not measured: evidence/report.py adds both blocks after the figures
(from repo/declarations.py), figure comparison ignores them, and verify checks only what
the report's own dates decide (`register_problems`). Reports made before them have none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ingest_server.repo.registry_model import DeclarationDef

METER_REGISTER_VERSION = 1
CALIBRATION_STATES = ("valid", "expires_in_period", "expired", "missing")
# the clauses checked against the standard's text are named in docs/kpi.md#meter-register
METER_REGISTER_BASIS = (
    "GB 17167-2006《用能单位能源计量器具配备和管理通则》第 5 章 能源计量器具的管理要求 "
    "(5.2 能源计量器具): 能源计量器具应在检定/校准有效期内使用。"
    "该标准自 2026-02-01 起由 GB 17167-2025 代替, 新版条款尚未核对。",
    "GB 17167-2006, General principle for equipping and managing of the measuring "
    "instrument of energy in organization of energy using, chapter 5, management "
    "requirements (5.2, the instruments): a meter is used within a valid verification or "
    "calibration. GB 17167-2025 replaces it from 2026-02-01; its clauses have not been "
    "checked.",
)


def calibration_state(
    cal: Mapping[str, Any] | None, date_from: dt.date, date_to: dt.date
) -> tuple[str, str | None, str | None]:
    """A certificate's state at the end of the period [date_from, date_to] (local dates),
    with the warning a reader sees in Chinese and English (None when valid); pure, so
    that a verifier recomputes it from the report. A certificate issued after the period
    did not exist then: missing, as none."""
    if cal is None:
        return ("missing", "未登记检定/校准证书: 无从证明该表在统计期内的准确度。",
                "no calibration certificate registered: nothing shows that this meter "
                "measured within its accuracy class in the period.")  # fmt: skip
    cert = cal.get("certificate")
    calibrated_on = dt.date.fromisoformat(str(cal.get("calibrated_on")))
    valid_until = dt.date.fromisoformat(str(cal.get("valid_until")))
    if calibrated_on > date_to:
        return ("missing", f"登记的证书 {cert} 出具于 {calibrated_on}, 晚于统计期: "
                "未登记覆盖统计期的证书。",
                f"the registered certificate {cert} was issued on {calibrated_on}, after "
                "the period: no certificate covering the period is registered.")  # fmt: skip
    if valid_until < date_from:
        return ("expired", f"证书 {cert} 已于 {valid_until} 到期, 早于统计期开始: 统计期内"
                "的读数无有效证书; 请送检并登记新证书。",
                f"certificate {cert} expired on {valid_until}, before the period began: no "
                "valid certificate covers the period's readings; have the meter verified "
                "and enter the new certificate.")  # fmt: skip
    if valid_until < date_to:
        return ("expires_in_period", f"证书 {cert} 有效期至 {valid_until}, 在统计期内到期: "
                "此后的读数无有效证书。",
                f"certificate {cert} was valid until {valid_until}, inside the period: "
                "the readings after that day are not covered.")  # fmt: skip
    return "valid", None, None


def meter_register_block(
    meters: list[dict[str, Any]], date_from: dt.date, date_to: dt.date
) -> dict[str, Any]:
    """The report's `meter_register`: each meter (repo/declarations.py meter_register) with
    its nameplate, certificate and state at the period's end, and a count by state."""
    rows = []
    for m in meters:
        cal = None if m["calibration"] is None else m["calibration"].model_dump(mode="json")
        state, warning, warning_en = calibration_state(cal, date_from, date_to)
        rows.append({
            **{k: m[k] for k in ("id", "site", "name", "name_en", "carrier", "serial",
                                 "model", "accuracy_class")},
            **{k: (cal or {}).get(k) for k in ("certificate", "issued_by", "calibrated_on",
                                               "valid_until")},
            "status": state, "warning": warning, "warning_en": warning_en,
        })  # fmt: skip
    zh, en = METER_REGISTER_BASIS
    return {
        "version": METER_REGISTER_VERSION,
        "as_of": date_to.isoformat(),
        "basis": zh,
        "basis_en": en,
        "meters": rows,
        "summary": {k: sum(r["status"] == k for r in rows) for k in CALIBRATION_STATES},
    }


def register_problems(doc: dict[str, Any]) -> list[str]:
    """What in a report's `meter_register` its own period and dates contradict (each
    meter's state and warning, the summary); [] for a report made before the block. The
    certificates themselves are the enterprise's declaration: not checked here."""
    block = doc.get("meter_register")
    if block is None:
        return []
    if not isinstance(block, dict) or not isinstance(block.get("meters"), list):
        return ["meter_register: not an object with a list of meters"]
    try:
        lo = dt.date.fromisoformat(doc["period"]["from"])
        hi = dt.date.fromisoformat(doc["period"]["to"])
    except (KeyError, TypeError, ValueError) as exc:
        return [f"meter_register: the report's period cannot be read ({exc})"]
    out = []
    for m in block["meters"]:
        if not isinstance(m, dict):
            out.append("meter_register: a meter that is not an object")
            continue
        cal = None if m.get("certificate") is None else m
        try:
            want = calibration_state(cal, lo, hi)
        except ValueError as exc:
            out.append(f"meter_register {m.get('id')}: a certificate date is not a date ({exc})")
            continue
        if (m.get("status"), m.get("warning"), m.get("warning_en")) != want:
            out.append(f"meter_register {m.get('id')}: stated {m.get('status')!r}, its "
                       f"certificate's dates give {want[0]!r} for {lo} to {hi}")  # fmt: skip
    counts = {k: sum(isinstance(m, dict) and m.get("status") == k for m in block["meters"])
              for k in CALIBRATION_STATES}  # fmt: skip
    if block.get("summary") != counts:
        out.append(f"meter_register: the summary {block.get('summary')} does not count the "
                   f"meters listed {counts}")  # fmt: skip
    return out


DECLARATION_VERSION = 1
DECLARATION_TEXT = (
    "本企业承诺: 本企业在登记表中录入的信息 (厂区、设备、计量器具及其检定/校准证书、产量与"
    "工业增加值等) 真实、准确; 本报告中的数值由 {software} 软件依据采集的计量数据和上述登记"
    "信息计算得出。",
    "The enterprise declares that the information it entered in its registry (sites, "
    "equipment, meters and their calibration certificates, output and value added) is true "
    "and accurate, and that the figures in this report were computed by the {software} "
    "software from the measured data and that registry.",
)


def declaration_block(
    declared: DeclarationDef | None, issued_on: dt.date, software: str
) -> dict[str, Any]:
    """The report's `declaration`: the enterprise's text (or the default one, `default`
    true), signatory and position as its registry gives them (null when it entered none:
    the page leaves the lines blank to sign by hand), dated the day of issue."""
    zh, en = DECLARATION_TEXT
    own = declared is not None and bool(declared.text.strip())
    return {
        "version": DECLARATION_VERSION,
        "text": declared.text if declared is not None and own else zh.format(software=software),
        "text_en": (
            declared.text_en if declared is not None and own else en.format(software=software)
        ),
        "default": not own,
        "signatory": None if declared is None else declared.signatory,
        "position": None if declared is None else declared.position,
        "date": issued_on.isoformat(),
    }
