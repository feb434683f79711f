"""The broker's files (`ingest-server gateway broker-files`): who may publish and subscribe
to what, from the gateway logins of repo/gateways.py and the server's own logins.

`broker-files` writes, for every gateway that is not revoked, the dynamic-security
plugin's file (`dynamic_security`: each gateway may publish only its own data, birth,
status and metrics, subscribe only to its own `ack` topic, with its client id bound to
its login; the server's logins may subscribe only to the data group, births and statuses
and publish only acks), or, for a broker without the plugin, Mosquitto's `password_file`
and `acl_file` with the same topic rules (weaker: Mosquitto 2.0's acl_file never checks a
subscription, so a gateway can join the server's share group; docs/deploy.md).
"""

from __future__ import annotations

from typing import Any

import psycopg

from edge_agent.contract import topics
from ingest_server.repo.gateways import GatewayError, broker_username, mosquitto_hash

# what a gateway publishes below its prefix; its `ack` topic is written by the server alone
GATEWAY_KINDS = ("data", "birth", "status", "metrics")
# what the server's logins read (metrics are live only: nobody on the server side reads them)
SERVER_READS = topics.STORED_KINDS
# the shared subscription the server's logins are allowed (the servers' --share-group)
SHARED_KINDS = ("data", "status")


def _broker_logins(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(username, topic prefix, password hash) of every gateway with a broker login."""
    rows = conn.execute(
        "SELECT enterprise_id, site_id, id, broker_password_hash FROM gateways "
        "WHERE broker_password_hash IS NOT NULL AND revoked_at IS NULL ORDER BY 1, 2, 3"
    ).fetchall()
    return [(broker_username(e, s, g), topics.prefix(e, s, g), h) for e, s, g, h in rows]


def _server_logins(server_users: dict[str, str]) -> list[tuple[str, str]]:
    """(name, password hash) of the server's logins, checked: a dot marks gateway logins."""
    found = []
    for name, password in sorted(server_users.items()):
        if not name or "." in name:
            raise GatewayError(f"server user {name!r}: a dot marks gateway logins; choose another")
        found.append((name, mosquitto_hash(password)))
    return found


def broker_files(conn: psycopg.Connection, server_users: dict[str, str]) -> tuple[str, str]:
    """Mosquitto's password file and ACL file, for a broker without the dynamic-security
    plugin: every gateway with a broker login writes only its own kinds below its prefix
    and reads only its `ack` topic; the server's logins (`server_users`: name -> password)
    read data, status and births and write every gateway's `ack`.

    Weaker than `dynamic_security`: Mosquitto's acl_file never checks a SUBSCRIBE (only
    what is delivered) nor binds a client id to its login, so a gateway can join the
    servers' shared subscription and swallow every other batch, or take over another
    client's session. The server's acks make the batch come back (docs/deploy.md)."""
    passwd, acl = [], ["# written by `ingest-server gateway broker-files`; do not edit", ""]
    for name, pw_hash in _server_logins(server_users):
        passwd.append(f"{name}:{pw_hash}")
        acl += [f"user {name}"]
        acl += [f"topic read {topics.every_gateway(k)}" for k in SERVER_READS]
        acl += [f"topic write {topics.every_gateway(topics.ACK_KIND)}", ""]
    for user, prefix, pw_hash in _broker_logins(conn):
        passwd.append(f"{user}:{pw_hash}")
        acl += [f"user {user}"]
        acl += [f"topic write {topics.topic(prefix, k)}" for k in GATEWAY_KINDS]
        acl += [f"topic read {topics.ack_topic(prefix)}", ""]
    return "\n".join(passwd) + "\n", "\n".join(acl)


def _dynsec_client(user: str, pw_hash: str, role: str, clientid: str | None) -> dict[str, Any]:
    # the plugin's fields hold the same PBKDF2-SHA512 as the password file's $7$ line
    _, kind, iterations, salt, digest = pw_hash.split("$")
    if kind != "7":
        raise GatewayError(f"broker login {user}: unknown password hash ${kind}$")
    client: dict[str, Any] = {
        "username": user, "password": digest, "salt": salt, "iterations": int(iterations),
        "roles": [{"rolename": role}],
    }  # fmt: skip
    if clientid is not None:
        client["clientid"] = clientid
    return client


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def dynamic_security(
    conn: psycopg.Connection, server_users: dict[str, str], *, share_group: str = "ingest"
) -> dict[str, Any]:
    """The dynamic-security plugin's file (Mosquitto 2, `plugin_opt_config_file`): what
    `broker_files` allows, plus what the acl_file cannot check. Nothing is allowed by
    default (unsubscribing aside). A gateway connects only with its username as client id
    (no other client can take over its session, it can take over none), publishes only its
    own kinds below its prefix, and subscribes to and receives only its own `ack` topic: a
    `$share` or wildcard subscription is refused (SUBACK "Not authorized"). The server's
    logins are not bound to a client id (`run --workers N` and several servers share one
    login); they subscribe only to `$share/<share_group>/fe/v1/+/+/+/{data,status}` and
    `fe/v1/+/+/+/birth`, receive those, and publish only on `fe/v1/+/+/+/ack`. The broker
    reads the file at its start only (Mosquitto 2.0 does not reload it on SIGHUP)."""
    if not share_group or not all(c.isascii() and (c.isalnum() or c in "_-") for c in share_group):
        raise GatewayError(
            f"share group {share_group!r}: letters, digits, _ and - only (the servers' "
            "--share-group)"
        )
    server_acls = [
        *(_acl("subscribeLiteral", f"$share/{share_group}/{topics.every_gateway(k)}")
          for k in SHARED_KINDS),
        _acl("subscribeLiteral", topics.every_gateway("birth")),
        *(_acl("publishClientReceive", topics.every_gateway(k)) for k in SERVER_READS),
        _acl("publishClientSend", topics.every_gateway(topics.ACK_KIND)),
    ]  # fmt: skip
    roles: list[dict[str, Any]] = [{"rolename": "fe-server", "acls": server_acls}]
    clients = [_dynsec_client(n, h, "fe-server", None) for n, h in _server_logins(server_users)]
    for user, prefix, pw_hash in _broker_logins(conn):
        role = f"fe-gateway {user}"
        ack = topics.ack_topic(prefix)
        acls = [_acl("publishClientSend", topics.topic(prefix, k)) for k in GATEWAY_KINDS]
        acls += [_acl("subscribeLiteral", ack), _acl("publishClientReceive", ack)]
        roles.append({"rolename": role, "acls": acls})
        clients.append(_dynsec_client(user, pw_hash, role, clientid=user))
    return {
        "defaultACLAccess": {
            "publishClientSend": False, "publishClientReceive": False,
            "subscribe": False, "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }  # fmt: skip
