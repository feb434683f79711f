"""`edge-agent keys init/show` as an installer runs them, and `check` with gateway.key_file.

The real CLI in a child process: what it prints is what an operator reads aloud, pastes
into `ingest-server gateway enroll` and compares with the server's fingerprint."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from edge_agent.contract.identity import FileSigner, fingerprint, public_key_text
from edge_agent.contract.yaml12 import load_yaml
from tests.harness.agent import write_key

REPO = Path(__file__).parents[2]
MINIMAL = REPO / "tests" / "golden" / "agent_configs" / "minimal.yaml"
FINGERPRINT = re.compile(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}")


def edge_agent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def printed(out: str) -> tuple[str, str]:
    """The public key and fingerprint from the first two lines, as a person reads them."""
    lines = out.splitlines()
    assert lines[0].startswith("public key:  "), out
    assert lines[1].startswith("fingerprint: "), out
    return lines[0].removeprefix("public key:  "), lines[1].removeprefix("fingerprint: ")


def of_file(path: Path) -> tuple[str, str]:
    public = FileSigner.load(path).public_key()
    return public_key_text(public), fingerprint(public)


def config_with(tmp_path: Path, key_file: str | None) -> Path:
    """minimal.yaml in tmp_path with its HMAC key, and gateway.key_file if given."""
    data = load_yaml(MINIMAL.read_text(encoding="utf-8"))
    if key_file is not None:
        data["gateway"]["key_file"] = key_file
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    if not (tmp_path / "gateway.key").exists():
        write_key(tmp_path / "gateway.key")
    return path


def test_init_makes_a_private_key_and_prints_what_to_enrol(tmp_path: Path) -> None:
    key = tmp_path / "k"
    run = edge_agent("keys", "init", "--key", str(key), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    public, fp = printed(run.stdout)
    assert len(public) == 44
    assert len(base64.b64decode(public, validate=True)) == 32
    assert FINGERPRINT.fullmatch(fp), fp
    assert (public, fp) == of_file(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    nxt = run.stdout.splitlines()[2:]
    assert fp in nxt[0]
    assert (
        nxt[1].strip()
        == f"ingest-server gateway enroll ENTERPRISE SITE GATEWAY --public-key {public}"
    )
    assert str(key) in run.stderr


def test_init_never_overwrites_a_key(tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert edge_agent("keys", "init", "--key", str(key), cwd=tmp_path).returncode == 0
    before = key.read_bytes()
    again = edge_agent("keys", "init", "--key", str(key), cwd=tmp_path)
    assert again.returncode == 2
    assert again.stdout == ""
    assert f"{key} exists: a gateway keeps its key" in again.stderr
    assert key.read_bytes() == before


def test_show_prints_the_same_two_values(tmp_path: Path) -> None:
    key = tmp_path / "k"
    made = edge_agent("keys", "init", "--key", str(key), cwd=tmp_path)
    shown = edge_agent("keys", "show", "--key", str(key), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert printed(shown.stdout) == printed(made.stdout) == of_file(key)
    assert len(shown.stdout.splitlines()) == 2


def test_show_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    key = tmp_path / "k"
    edge_agent("keys", "init", "--key", str(key), cwd=tmp_path)
    key.chmod(0o644)
    shown = edge_agent("keys", "show", "--key", str(key), cwd=tmp_path)
    assert shown.returncode == 2
    assert shown.stdout == ""
    assert f"(mode 644): chmod 600 {key}" in shown.stderr


def test_show_of_a_missing_key_says_how_to_make_one(tmp_path: Path) -> None:
    shown = edge_agent("keys", "show", "--key", str(tmp_path / "absent"), cwd=tmp_path)
    assert shown.returncode == 2
    assert "make one with `edge-agent keys init`" in shown.stderr


def test_the_config_key_file_is_relative_to_the_config(tmp_path: Path) -> None:
    site = tmp_path / "etc"
    site.mkdir()
    config = config_with(site, "keys/gateway.ed25519")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    made = edge_agent("keys", "init", "--config", str(config), cwd=elsewhere)
    assert made.returncode == 0, made.stderr
    key = site / "keys" / "gateway.ed25519"
    assert printed(made.stdout) == of_file(key)
    assert not (elsewhere / "keys").exists()
    public, _ = printed(made.stdout)
    # the config knows the gateway: the command to paste is complete
    assert f"ingest-server gateway enroll acme plant1 gw-01 --public-key {public}" in made.stdout
    shown = edge_agent("keys", "show", "--config", str(config), cwd=elsewhere)
    assert printed(shown.stdout) == printed(made.stdout)


def test_key_beats_the_config_key_file(tmp_path: Path) -> None:
    config = config_with(tmp_path, "from-config.ed25519")
    made = edge_agent(
        "keys", "init", "--config", str(config), "--key", str(tmp_path / "given"), cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    assert printed(made.stdout) == of_file(tmp_path / "given")
    assert not (tmp_path / "from-config.ed25519").exists()


def only_the_contract_1_warning(stderr: str, config: Path) -> bool:
    """Every contract-1 config gets one warning line from `check` (its words:
    test_contract2.py)."""
    return stderr.startswith(f"{config}: warning: gateway.contract 1") and stderr.count("\n") == 1


def test_init_with_a_bad_config_makes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("version: 1\ngateway: {enterprise: acme, site: plant1, id: gw-01}\n")
    key = tmp_path / "k"  # given, so that a broken check would write here, not to /etc
    made = edge_agent("keys", "init", "--config", str(config), "--key", str(key), cwd=tmp_path)
    assert made.returncode == 2
    assert f"{config}: invalid agent config" in made.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.yaml"]


def test_check_warns_about_a_missing_key_file_and_passes(tmp_path: Path) -> None:
    config = config_with(tmp_path, None)
    plain = edge_agent("check", str(config), cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert only_the_contract_1_warning(plain.stderr, config), plain.stderr
    config_with(tmp_path, "gateway.ed25519")  # the same file, now with gateway.key_file
    missing = edge_agent("check", str(config), cwd=tmp_path)
    assert missing.returncode == 0, missing.stderr
    assert missing.stdout == plain.stdout  # the read plan as before
    assert missing.stderr.startswith(f"{config}: warning: gateway.key_file cannot be used")
    assert str(tmp_path / "gateway.ed25519") in missing.stderr
    assert "edge-agent keys init" in missing.stderr


def test_check_warns_about_a_key_file_others_can_read(tmp_path: Path) -> None:
    config = config_with(tmp_path, "gateway.ed25519")
    edge_agent("keys", "init", "--config", str(config), cwd=tmp_path)
    (tmp_path / "gateway.ed25519").chmod(0o640)
    checked = edge_agent("check", str(config), cwd=tmp_path)
    assert checked.returncode == 0
    assert "warning: gateway.key_file cannot be used" in checked.stderr
    assert "chmod 600" in checked.stderr


def test_check_shows_the_fingerprint_of_a_usable_key_file(tmp_path: Path) -> None:
    config = config_with(tmp_path, "gateway.ed25519")
    made = edge_agent("keys", "init", "--config", str(config), cwd=tmp_path)
    _, fp = printed(made.stdout)
    checked = edge_agent("check", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert only_the_contract_1_warning(checked.stderr, config), checked.stderr
    last = checked.stdout.splitlines()[-1]
    assert last.startswith(f"  gateway key {tmp_path / 'gateway.ed25519'}: fingerprint {fp}")
