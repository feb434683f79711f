"""`ingest-server verify BUNDLE --trust TRUST` and `ingest-server paper`: the verifier's
commands over test_bundle's real bundle and trust file (a real PostgreSQL plant and a real
RFC 3161 TSA built them). The commands themselves use no database: `made` is built once,
then only files are read. Exit codes: 0 pass, 3 fail, 4 incomplete, 2 bad input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest_server.cli.main import main
from ingest_server.cli.verifier import EXIT_CODES
from ingest_server.evidence.algorithms import UnsupportedAlgorithmError
from ingest_server.evidence.canonical import sign
from ingest_server.evidence.offline import check_bundle
from ingest_server.evidence.qr import paper_mark
from ingest_server.evidence.signature import check_signature, trusted_key
from tests.evidence import test_bundle
from tests.evidence.test_offline import zipped

made = test_bundle.made  # its plant, bundle and trust file, built once for this module

Made = dict[str, Any]
Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def files(made: Made, tmp_path: Path) -> tuple[Path, Path]:
    """The clean bundle and the trust file, as the verifier receives them."""
    trust = tmp_path / "trust.json"
    trust.write_text(made["trust_text"], encoding="utf-8")
    return zipped(tmp_path, made["files"]), trust


def test_verify_prints_every_check_in_both_languages_and_exits_by_verdict(
    files: tuple[Path, Path], capsys: Capsys
) -> None:
    bundle, trust = files
    want = check_bundle(bundle, trust)
    code = main(["verify", str(bundle), "--trust", str(trust)])
    out = capsys.readouterr().out
    assert code == EXIT_CODES[want.verdict]
    assert code == {"pass": 0, "fail": 3, "incomplete": 4}[want.verdict]
    zh, en = want.text
    assert f"结论: {zh}" in out
    assert f"Verdict: {en}" in out
    for c in want.checks:
        assert f"] {c.name} (" in out, c.name
        for r in c.reasons:
            assert r.text in out
            assert r.text_en in out
    assert "[通过] manifest" in out
    assert "[ok] manifest" in out
    assert "哈希链缺口: 无" in out
    assert "chain gaps: none" in out
    days = want.check("anchors").details["unanchored_days"]  # the days around the period
    assert f"unanchored days: {', '.join(days) or '—'}" in out
    assert f"未锚定的日期: {', '.join(days) or '—'}" in out


def test_verify_json_is_the_verdicts_json(files: tuple[Path, Path], capsys: Capsys) -> None:
    bundle, trust = files
    code = main(["verify", str(bundle), "--trust", str(trust), "--json"])
    got = json.loads(capsys.readouterr().out)
    want = check_bundle(bundle, trust)
    assert got == json.loads(json.dumps(want.as_json(), default=str))
    assert code == EXIT_CODES[got["verdict"]]


def test_one_language_on_request(files: tuple[Path, Path], capsys: Capsys) -> None:
    bundle, trust = files
    main(["verify", str(bundle), "--trust", str(trust), "--lang", "zh"])
    zh = capsys.readouterr().out
    main(["verify", str(bundle), "--trust", str(trust), "--lang", "en"])
    en = capsys.readouterr().out
    assert "结论:" in zh
    assert "Verdict:" not in zh
    assert "Verdict:" in en
    assert "结论:" not in en


def test_a_report_signed_by_a_key_not_in_the_trust_file_fails_with_exit_3(
    made: Made, tmp_path: Path, files: tuple[Path, Path], capsys: Capsys
) -> None:
    _, trust = files
    doc = json.loads(made["files"]["report.json"])
    sign(doc, Ed25519PrivateKey.generate())
    report = json.dumps(doc).encode()
    bundle = zipped(tmp_path, {**made["files"], "report.json": report}, fix=("report.json",))
    assert main(["verify", str(bundle), "--trust", str(trust)]) == 3
    out = capsys.readouterr().out
    assert "[FAILED] report_signature" in out
    assert "[未通过] report_signature" in out
    assert "which is not in the trust file" in out
    assert "不通过" in out
    assert "FAIL:" in out


@pytest.mark.parametrize("what", ["not a zip", "no such file", "no manifest"])
def test_bad_input_exits_2_naming_it(
    what: str, files: tuple[Path, Path], tmp_path: Path, capsys: Capsys
) -> None:
    _, trust = files
    path = tmp_path / "x.zip"
    if what == "not a zip":
        path.write_text("hello")
    elif what == "no manifest":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("report.json", "{}")
    assert main(["verify", str(path), "--trust", str(trust)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert {"not a zip": "not a readable zip file", "no such file": "does not exist",
            "no manifest": "without manifest.json"}[what] in err  # fmt: skip


def test_a_trust_file_that_is_not_one_exits_2(
    files: tuple[Path, Path], tmp_path: Path, capsys: Capsys
) -> None:
    bundle, _ = files
    trust = tmp_path / "t.json"
    trust.write_text('{"format": "something else"}')
    assert main(["verify", str(bundle), "--trust", str(trust)]) == 2
    assert "trust export" in capsys.readouterr().err


def test_the_database_options_do_not_mix_with_trust(
    files: tuple[Path, Path], capsys: Capsys
) -> None:
    bundle, trust = files
    assert main(["verify", str(bundle), "--trust", str(trust), "--dsn", "postgresql://x"]) == 2
    assert "takes no --dsn" in capsys.readouterr().err
    assert main(["verify", str(bundle), "--lang", "en"]) == 2
    assert "--lang applies to a bundle checked with --trust" in capsys.readouterr().err


def test_paper_matches_the_printed_qr_text_to_the_bundle(
    made: Made, files: tuple[Path, Path], capsys: Capsys
) -> None:
    bundle, trust = files
    mark = paper_mark(json.loads(made["files"]["report.json"]))
    assert mark is not None
    assert mark.qr_text is not None
    verdict = check_bundle(bundle, trust).verdict
    code = main(["paper", mark.qr_text, "--bundle", str(bundle), "--trust", str(trust)])
    out = capsys.readouterr().out
    assert code == EXIT_CODES[verdict]
    assert "the paper is a copy of the bundle's report" in out
    assert "纸质报告与证据包中的报告一致" in out
    # another report's code: the paper is not this bundle's report, whatever the bundle says
    other = mark.qr_text.replace(f"FE1:{mark.report_id}:", "FE1:another-report:")
    assert main(["paper", other, "--bundle", str(bundle), "--trust", str(trust)]) == 3
    out = capsys.readouterr().out
    assert "the paper is NOT the bundle's report" in out
    assert f"report id: paper another-report, file {mark.report_id}" in out
    assert main(["paper", "FE9:x", "--bundle", str(bundle), "--trust", str(trust)]) == 2
    assert "not 'FE1'" in capsys.readouterr().err


def test_an_unknown_signature_algorithm_is_refused_in_both_languages(made: Made) -> None:
    """The seam for SM2/SM3: the algorithm is looked up in one table; a name it lacks is
    refused as not supported, never verified as Ed25519; a key without one is Ed25519."""
    doc = json.loads(made["files"]["report.json"])
    assert check_signature(doc)[0]
    doc["signature"]["algorithm"] = "SM2"
    ok, _, text = check_signature(doc)
    assert not ok
    assert "'SM2', which is not supported by this verifier" in text
    with pytest.raises(UnsupportedAlgorithmError) as info:
        trusted_key({"algorithm": "sm2", "public_key": "AAAA"})
    assert "本验证程序不支持该算法" in info.value.text
    assert "not supported by this verifier" in info.value.text_en
    key = json.loads(made["trust_text"])["report_keys"][0]
    assert "algorithm" not in key  # files issued so far: Ed25519 by default
    assert trusted_key(key).algorithm == "ed25519"
    assert trusted_key({**key, "algorithm": "Ed25519"}).key_id == key["key_id"]
    assert check_signature(json.loads(made["files"]["report.json"]),
                           trusted=trusted_key(key))[1]  # fmt: skip


def test_a_trust_file_naming_an_algorithm_this_verifier_lacks(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report key of another algorithm fails the report's check with the bilingual
    reason; a gateway key of another algorithm makes the trust file unreadable (exit 2)."""
    bundle = zipped(tmp_path, made["files"])
    trust = json.loads(made["trust_text"])
    trust["report_keys"][0]["algorithm"] = "SM2"
    (tmp_path / "sm2-report.json").write_text(json.dumps(trust))
    check = check_bundle(bundle, tmp_path / "sm2-report.json").check("report_signature")
    assert check.status == "failed"
    (reason,) = check.reasons
    assert reason.code == "algorithm_unsupported"
    assert "本验证程序不支持该算法" in reason.text
    assert "not supported by this verifier" in reason.text_en
    trust = json.loads(made["trust_text"])
    trust["gateways"][0]["keys"][0]["algorithm"] = "SM2"
    (tmp_path / "sm2-gateway.json").write_text(json.dumps(trust))
    code = main(["verify", str(bundle), "--trust", str(tmp_path / "sm2-gateway.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "'SM2', which is not supported by this verifier" in err
