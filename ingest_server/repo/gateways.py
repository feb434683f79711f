"""Gateway identities: what a gateway needs to publish, and what the broker needs to let
it publish only as itself.

    ingest-server gateway add ENTERPRISE SITE GATEWAY [--out DIR] [--mqtt-url URL] [--rotate]
                                                      [--public-key KEY]
    ingest-server gateway enroll ENTERPRISE SITE GATEWAY --public-key KEY [--replace]
    ingest-server gateway revoke ENTERPRISE SITE GATEWAY
    ingest-server gateway broker-files [--dynsec FILE] [--passwd FILE --acl FILE]
                                       [--server-user NAME=FILE ...]
    ingest-server gateway list

`add` issues an HMAC key (contract 1 signs every batch with it; kept in the database,
which checks it) and a broker login (username `enterprise.site.gateway`, a random
password stored only as Mosquitto's PBKDF2-SHA512 hash), and writes the gateway's bundle:
the key and password files (mode 600) and an agent config skeleton.

Contract 2: the gateway makes its own Ed25519 key pair (`edge-agent keys init`) and the
server keeps only the public key (`enroll_public_key`, or `add_gateway` with
`public_key`): `gateways.contract` becomes 2, every key it has had stays in
`gateway_public_keys` (old batches verify under the key of their time), and the server
accepts only v2 from it. `revoke` removes the keys and the login: the broker refuses the
gateway once its files are rewritten and it restarts, and running servers dead-letter its
batches within a minute (their key cache's max age).

`broker-files` writes the broker's files from these logins: repo/broker.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg

from edge_agent.contract import identity, topics
from ingest_server.errors import InvalidInputError

# Mosquitto 2's password file: $7$ = PBKDF2-HMAC-SHA512, its default 101 iterations
MOSQUITTO_ITERATIONS = 101


class GatewayError(InvalidInputError, ValueError):
    """A gateway request that cannot be carried out; the message says why and what to do."""


@dataclass(frozen=True)
class Enrolment:
    """What enrolling a public key did: `enrolled` (the gateway had none), `unchanged` (it
    had this one: nothing done) or `replaced` (it had `previous`, another one)."""

    fingerprint: str
    outcome: Literal["enrolled", "unchanged", "replaced"]
    previous: str | None = None  # the fingerprint of the key replaced


@dataclass(frozen=True)
class Identity:
    enterprise: str
    site: str
    gateway: str
    username: str
    password: str  # shown once
    hmac_key: bytes  # shown once: the key file's text (64 hex digits)
    enrolment: Enrolment | None = None  # the public key enrolled with it (contract v2)

    @property
    def prefix(self) -> str:
        return topics.prefix(self.enterprise, self.site, self.gateway)


def broker_username(enterprise: str, site: str, gateway: str) -> str:
    # ids are [a-z0-9_-]: a dot cannot be part of one
    return f"{enterprise}.{site}.{gateway}"


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """The password as mosquitto_passwd writes it ($7$: PBKDF2-SHA512)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS, 64)
    b64 = base64.b64encode
    return f"$7${MOSQUITTO_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def add_gateway(
    conn: psycopg.Connection,
    enterprise: str,
    site: str,
    gateway: str,
    *,
    rotate: bool = False,
    public_key: bytes | None = None,
    replace: bool = False,
) -> Identity:
    """New secrets for a gateway of a registered site (the gateway row is created if the
    registry does not have it yet). A gateway that already has secrets keeps them unless
    `rotate`: then the old key and password stop working. With `public_key` the gateway's
    own key is enrolled in the same transaction (contract 2, `enroll_public_key`, which
    replaces an enrolled key only with `replace`); the HMAC key is issued all the same."""
    if (
        conn.execute(
            "SELECT 1 FROM sites WHERE enterprise_id = %s AND id = %s", (enterprise, site)
        ).fetchone()
        is None
    ):
        raise GatewayError(
            f"no site {site!r} of enterprise {enterprise!r}: import the registry first "
            "(ingest-server registry import FILE)"
        )
    row = conn.execute(
        "SELECT hmac_key IS NOT NULL, revoked_at FROM gateways "
        "WHERE enterprise_id = %s AND site_id = %s AND id = %s",
        (enterprise, site, gateway),
    ).fetchone()
    if row is not None and row[0] and row[1] is None and not rotate:
        alone = (
            "; to enrol its public key alone: ingest-server gateway enroll "
            f"{enterprise} {site} {gateway} --public-key KEY"
            if public_key is not None
            else ""
        )
        raise GatewayError(
            f"gateway {enterprise}/{site}/{gateway} already has a key and a broker login: "
            f"give --rotate to issue new ones (the old ones stop working){alone}"
        )
    # the agent signs with the key file's text (edge_agent.contract.secrets.read_secret): 64 hex
    # digits, 32 random bytes; the server checks with the same bytes
    key = secrets.token_hex(32).encode()
    password = secrets.token_urlsafe(24)
    enrolment = None
    with conn.transaction():
        # a gateway revoked (its public key cleared) starts again at contract 1, until a
        # public key is enrolled
        conn.execute(
            """
            INSERT INTO gateways (enterprise_id, site_id, id, hmac_key, broker_password_hash,
                                  issued_at, revoked_at)
            VALUES (%s, %s, %s, %s, %s, now(), NULL)
            ON CONFLICT (enterprise_id, site_id, id) DO UPDATE SET
                hmac_key = excluded.hmac_key,
                broker_password_hash = excluded.broker_password_hash,
                issued_at = now(), revoked_at = NULL,
                contract = CASE WHEN gateways.public_key IS NULL THEN 1
                                ELSE gateways.contract END,
                enrolled_at = CASE WHEN gateways.public_key IS NULL THEN NULL
                                   ELSE gateways.enrolled_at END
            """,
            (enterprise, site, gateway, key, mosquitto_hash(password)),
        )
        if public_key is not None:
            enrolment = enroll_public_key(
                conn, enterprise=enterprise, site=site, gateway=gateway,
                public_key=public_key, replace=replace,
            )  # fmt: skip
    return Identity(
        enterprise, site, gateway, broker_username(enterprise, site, gateway), password, key,
        enrolment,
    )  # fmt: skip


def enroll_public_key(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    site: str,
    gateway: str,
    public_key: bytes,
    replace: bool = False,
) -> Enrolment:
    """Enrol the gateway's own Ed25519 public key (the raw 32 bytes): the gateway then
    speaks contract 2. The gateway must exist and not be revoked. Enrolling the key it
    already has changes nothing (`unchanged`); another key replaces it only with
    `replace`, after the operator has compared its fingerprint with the gateway's."""
    name = f"{enterprise}/{site}/{gateway}"
    try:
        new = identity.fingerprint(public_key)
    except ValueError as exc:
        raise GatewayError(f"gateway {name}: {exc}") from None
    with conn.transaction():
        row = conn.execute(
            "SELECT gid, public_key, contract, revoked_at FROM gateways "
            "WHERE enterprise_id = %s AND site_id = %s AND id = %s FOR UPDATE",
            (enterprise, site, gateway),
        ).fetchone()
        if row is None:
            raise GatewayError(
                f"no gateway {name}: add it first (ingest-server gateway add {enterprise} "
                f"{site} {gateway} --public-key KEY)"
            )
        gid, current, contract, revoked_at = row
        if revoked_at is not None:
            raise GatewayError(
                f"gateway {name} is revoked: give it new secrets and enrol its key in one "
                f"step (ingest-server gateway add {enterprise} {site} {gateway} "
                "--public-key KEY)"
            )
        current = None if current is None else bytes(current)
        if current == public_key and contract == 2:
            return Enrolment(new, "unchanged")
        if current is not None and current != public_key and not replace:
            raise GatewayError(
                f"gateway {name} already has public key {identity.fingerprint(current)} "
                f"enrolled; this key is {new}. Check {new} against the fingerprint the "
                "gateway printed (edge-agent keys init), then pass --replace"
            )
        other = conn.execute(
            "SELECT enterprise_id, site_id, id FROM gateways WHERE public_key = %s AND gid <> %s",
            (public_key, gid),
        ).fetchone()
        if other is not None:
            raise GatewayError(
                f"public key {new} is already enrolled for gateway {'/'.join(other)}: each "
                "gateway makes its own (edge-agent keys init on that gateway), a key file "
                "is never copied"
            )
        conn.execute(
            "UPDATE gateways SET public_key = %s, contract = 2, enrolled_at = now() WHERE gid = %s",
            (public_key, gid),
        )
        # the key history: a batch is verified with the key in effect when it arrived
        # (`ledger check`), so the key replaced retires now and the new one starts now. A
        # key enrolled again later keeps its first enrolled_at (one row per gateway and key)
        conn.execute(
            "UPDATE gateway_public_keys SET retired_at = now() "
            "WHERE gid = %s AND public_key <> %s AND retired_at IS NULL",
            (gid, public_key),
        )
        conn.execute(
            "INSERT INTO gateway_public_keys (gid, public_key, enrolled_at) "
            "VALUES (%s, %s, now()) "
            "ON CONFLICT (gid, public_key) DO UPDATE SET retired_at = NULL",
            (gid, public_key),
        )
    if current is None or current == public_key:
        return Enrolment(new, "enrolled")
    return Enrolment(new, "replaced", identity.fingerprint(current))


def contract_of(conn: psycopg.Connection, enterprise: str, site: str, gateway: str) -> int:
    """The contract a registered gateway speaks (1 when it is not registered)."""
    row = conn.execute(
        "SELECT contract FROM gateways WHERE enterprise_id = %s AND site_id = %s AND id = %s",
        (enterprise, site, gateway),
    ).fetchone()
    return 1 if row is None else int(row[0])


def revoke_gateway(conn: psycopg.Connection, enterprise: str, site: str, gateway: str) -> None:
    """End a gateway's identity: its HMAC key, broker login and public key are cleared."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE gateways SET hmac_key = NULL, broker_password_hash = NULL, "
            "public_key = NULL, revoked_at = now() "
            "WHERE enterprise_id = %s AND site_id = %s AND id = %s AND revoked_at IS NULL",
            (enterprise, site, gateway),
        )
        # its key stays in the history, retired: what it signed before still verifies
        conn.execute(
            "UPDATE gateway_public_keys SET retired_at = now() WHERE retired_at IS NULL "
            "AND gid = (SELECT gid FROM gateways "
            "WHERE enterprise_id = %s AND site_id = %s AND id = %s)",
            (enterprise, site, gateway),
        )
    if cur.rowcount == 0:
        raise GatewayError(f"no gateway {enterprise}/{site}/{gateway} that is not revoked")


def list_gateways(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every gateway: its ids, which secrets it has, when issued and revoked, whether it is
    online, the contract it speaks and its public key's fingerprint (None without one)."""
    cur = conn.execute(
        "SELECT enterprise_id, site_id, id, hmac_key IS NOT NULL AS has_key, "
        "broker_password_hash IS NOT NULL AS has_login, issued_at, revoked_at, online, "
        "contract, public_key, enrolled_at "
        "FROM gateways ORDER BY 1, 2, 3"
    )
    names = [d.name for d in cur.description or ()]
    found = []
    for r in cur.fetchall():
        g = dict(zip(names, r, strict=True))
        key = g.pop("public_key")
        g["fingerprint"] = None if key is None else identity.fingerprint(bytes(key))
        found.append(g)
    return found


def agent_skeleton(
    identity: Identity, mqtt_url: str, key_file: Path, password_file: Path, *, contract: int = 1
) -> str:
    """A starting agent config for the gateway: its identity and broker login filled in,
    one example device to replace (`edge-agent discover` proposes real ones). `key_file`
    is the key it signs with: the HMAC key (contract 1) or, for a gateway whose public key
    is enrolled (contract 2), its own Ed25519 key (`edge-agent keys init` makes it there).
    The client id is the broker login: the broker binds one to the other."""
    tls = ""
    if mqtt_url.startswith("mqtts://"):
        tls = "  tls:\n    ca_file: /etc/factory-evidence/ca.crt   # the broker's CA\n"
    if contract == 2:
        signing, mqtt_key = f"  contract: 2\n  key_file: {key_file}\n", ""
    else:
        signing, mqtt_key = "", f"  hmac_key_file: {key_file}\n"
    return f"""\
# factory-evidence edge agent: {identity.enterprise}/{identity.site}/{identity.gateway}
# Made by `ingest-server gateway add`; check it with `edge-agent check THIS_FILE`.
version: 1
gateway:
  enterprise: {identity.enterprise}
  site: {identity.site}
  id: {identity.gateway}
{signing}mqtt:
  url: {mqtt_url}
  client_id: {identity.username}
  username: {identity.username}
  password_file: {password_file}
{mqtt_key}{tls}outbox:
  path: /var/lib/factory-evidence/outbox.db
devices:
  # replace with the machines of this gateway (edge-agent discover opc.tcp://HOST:PORT)
  - id: example-cnc
    protocol: opcua
    endpoint: opc.tcp://192.0.2.10:4840
    nodes:
      - tag: state
        node: ns=2;s=Machine.State
        role: machine_state
        state_map: {{"0": OFF, "1": IDLE, "2": RUNNING, "3": DOWN, "4": SETUP}}
"""
