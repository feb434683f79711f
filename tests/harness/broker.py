"""A real Mosquitto broker on a free loopback port, started and stopped by the test run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.netutil import LOOPBACK, free_port


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed; `make test` installs it with apt-get")
    return found


# where Debian/Ubuntu (multiarch) and the eclipse-mosquitto image keep the plugin
DYNSEC_PLUGINS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)


def dynsec_plugin() -> str:
    """Mosquitto's dynamic-security plugin (in the mosquitto package since 2.0)."""
    for path in DYNSEC_PLUGINS:
        if Path(path).exists():
            return path
    raise RuntimeError(
        "mosquitto_dynamic_security.so not found (looked in " + ", ".join(DYNSEC_PLUGINS)
        + "): install Mosquitto 2.0 or newer with apt-get"
    )  # fmt: skip


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_broker(
    workdir: Path,
    *,
    port: int | None = None,
    persistence: bool = False,
    tls: tuple[Path, Path] | None = None,
    passwords: dict[str, str] | None = None,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    extra_listener: tuple[str, int] | None = None,
    dynsec_file: Path | None = None,
    autosave_interval_s: int = 1,
) -> Broker:
    """A broker; with persistence, sessions and queued messages survive a restart.

    tls: (certificate, key) for a TLS-only listener; passwords: user -> password, or a
    ready password_file (with an acl_file), and then no anonymous access. extra_listener:
    (address, port) of a second plain listener, e.g. on a veth a test made. dynsec_file:
    the dynamic-security plugin's JSON file (logins, client ids and ACLs, read at start;
    `ingest-server gateway broker-files --dynsec`), and then no anonymous access.
    autosave_interval_s: how often a persistent broker saves its state (deploy/ uses 60:
    a broker killed in between loses what it queued since).
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    log = workdir / "mosquitto.log"
    auth = "allow_anonymous true\n"
    if passwords:
        pwfile = workdir / "passwords"
        pwfile.write_text("", encoding="utf-8")
        for user, password in passwords.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(pwfile), user, password],
                check=True,
                capture_output=True,
            )
        auth = f"allow_anonymous false\npassword_file {pwfile}\n"
    if password_file:
        auth = f"allow_anonymous false\npassword_file {password_file}\n"
    if acl_file:
        auth += f"acl_file {acl_file}\n"
    if dynsec_file:
        auth = (
            f"allow_anonymous false\nplugin {dynsec_plugin()}\n"
            f"plugin_opt_config_file {dynsec_file}\n"
        )
    if tls:
        auth += f"certfile {tls[0]}\nkeyfile {tls[1]}\n"
    conf.write_text(
        f"listener {port} {LOOPBACK}\n"
        + (f"listener {extra_listener[1]} {extra_listener[0]}\n" if extra_listener else "")
        + auth
        # as root, mosquitto drops to user 'mosquitto', which cannot write the test's
        # private temporary directory (log, persistence): stay the test's own user
        + ("user root\n" if os.geteuid() == 0 else "")
        + (
            f"persistence true\npersistence_location {workdir}/\n"
            f"autosave_interval {autosave_interval_s}\n"
            if persistence
            else "persistence false\n"
        )
        + f"log_dest file {log}\nlog_type error\nlog_type warning\nlog_type notice\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(encoding="utf-8") if log.exists() else ""
            raise RuntimeError(f"mosquitto exited with {proc.returncode}: {text}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return Broker(LOOPBACK, port, proc, log)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"mosquitto did not listen on {LOOPBACK}:{port} within 10 s")
