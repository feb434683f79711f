"""The offline verifier's verdict: each check ok, failed or not_checked, with bilingual
reasons (`Check`, `Reason`), and the bundle's verdict over them (`Verdict`: pass only when
every check ran and held). Also the two ways a check is made: run guarded against a
missing or unreadable member (`_guarded`), and the ledger check's findings worded as
reasons (`_findings`), so that the batches and chain checks say what `ledger check` says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import pyarrow as pa  # type: ignore[import-untyped]

from ingest_server.errors import InvalidInputError
from ingest_server.evidence import ledger

Status = Literal["ok", "failed", "not_checked"]
_LISTED = 20  # reasons of one kind listed in full; the rest are counted


class BundleInputError(InvalidInputError, ValueError):
    """A file that is not a bundle or a trust file this verifier reads."""


@dataclass(frozen=True)
class Reason:
    code: str
    text: str  # Chinese, as the report's bilingual notices (`text`, `text_en`)
    text_en: str


@dataclass
class Check:
    name: str  # manifest, report_signature, batches, chain, anchors, kpis
    status: Status = "ok"
    reasons: list[Reason] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, code: str, zh: str, en: str) -> None:
        self.status = "failed"
        self.reasons.append(Reason(code, zh, en))

    def skip(self, zh: str, en: str) -> None:
        self.status = "not_checked"
        self.reasons.append(Reason("not_checked", zh, en))


@dataclass
class Verdict:
    checks: list[Check]

    @property
    def verdict(self) -> Literal["pass", "incomplete", "fail"]:
        """pass only when every check ran and held; a check not run is never a pass."""
        if any(c.status == "failed" for c in self.checks):
            return "fail"
        if any(c.status == "not_checked" for c in self.checks):
            return "incomplete"
        return "pass"

    def check(self, name: str) -> Check:
        (found,) = [c for c in self.checks if c.name == name]
        return found

    @property
    def text(self) -> tuple[str, str]:
        """The verdict in one line, Chinese and English."""
        failed = [c.name for c in self.checks if c.status == "failed"]
        skipped = [c.name for c in self.checks if c.status == "not_checked"]
        if failed:
            return (f"不通过: 以下检查未通过: {'、'.join(failed)}",
                    f"FAIL: these checks failed: {', '.join(failed)}")  # fmt: skip
        if skipped:
            return (f"不完整: 其余检查均通过, 但以下检查未进行: {'、'.join(skipped)}",
                    f"INCOMPLETE: every other check holds, but these were not checked: "
                    f"{', '.join(skipped)}")  # fmt: skip
        return "通过: 所有检查均成立", "PASS: every check holds"

    def as_json(self) -> dict[str, Any]:
        zh, en = self.text
        return {
            "verdict": self.verdict, "text": zh, "text_en": en,
            "checks": [
                {"name": c.name, "status": c.status, "details": c.details,
                 "reasons": [{"code": r.code, "text": r.text, "text_en": r.text_en}
                             for r in c.reasons]}
                for c in self.checks
            ],
        }  # fmt: skip


def _guarded(name: str, files: Mapping[str, bytes], needs: Sequence[str], run: Any) -> Check:
    """`run()`, unless a member it reads is missing (not_checked, naming it) or cannot be
    read (failed: the bundle is damaged, and no other check can stand in for this one)."""
    missing = [m for m in needs if m not in files]
    if missing:
        c = Check(name)
        c.skip(f"证据包缺少 {', '.join(missing)}, 无法检查",
               f"the bundle lacks {', '.join(missing)}: cannot be checked")  # fmt: skip
        return c
    try:
        return cast(Check, run())
    except (pa.ArrowException, ValueError, KeyError, TypeError) as exc:
        c = Check(name)
        c.fail("unreadable", f"证据包内容无法读取: {exc!r}",
               f"the bundle's members cannot be read for this check: {exc!r}")  # fmt: skip
        return c


_ZH_KIND = {
    "changed": "样本与网关签名的内容不符", "signature": "网关签名不成立",
    "positions": "批次内样本位置不完整", "gap": "哈希链断裂 (缺少批次)",
    "order": "哈希链顺序错误", "declaration": "网关的丢弃声明不成立",
    "orphan_samples": "样本所属批次不在账本中",
}  # fmt: skip


def _findings(c: Check, findings: Sequence[ledger.Finding], extra: Mapping[int, str] = {}) -> None:
    """ledger findings as reasons: the Chinese names the kind, both carry the finding."""
    for i, f in enumerate(findings):
        if i == _LISTED:
            more = len(findings) - _LISTED
            c.fail("more", f"另有 {more} 项问题未列出", f"and {more} more finding(s)")
            return
        en = f"{f.where()}: {f.message}{extra.get(i, '')}"
        c.fail(f.kind, f"{f.where()}: {_ZH_KIND.get(f.kind, f.kind)} ({en})", en)
