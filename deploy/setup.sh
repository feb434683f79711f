#!/bin/sh
# One-time set-up for deploy/compose.yaml: secrets and demo certificates in
# deploy/secrets/ (docs/deploy.md, "Compose"). Existing files are kept.
#   deploy/setup.sh [BROKER_NAME ...]     (default: mosquitto localhost 127.0.0.1)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
s="$here/secrets"
mkdir -p "$s"
umask 077
[ -f "$s/db_password" ] || openssl rand -hex 24 > "$s/db_password"
[ -f "$s/mqtt_server_password" ] || openssl rand -hex 24 > "$s/mqtt_server_password"
# libpq's password file for the servers: host:port:database:user:password
printf 'timescaledb:5432:fe:fe:%s\n' "$(cat "$s/db_password")" > "$s/pgpass"
[ "$#" -gt 0 ] || set -- mosquitto localhost 127.0.0.1
"$here/certs/make-certs.sh" "$s/certs" "$@"
# the containers run as uid 10001 (factory-evidence), 1883 (mosquitto) and 70/999
# (postgres): give each its files, readable by nobody else
if [ "$(id -u)" = 0 ]; then
    chown 10001 "$s/pgpass" "$s/mqtt_server_password"
    chown 1883 "$s/certs/broker.key"
else
    echo "not root: chown 10001 $s/pgpass $s/mqtt_server_password and" \
         "chown 1883 $s/certs/broker.key as root before docker compose up" >&2
fi
chmod 600 "$s/db_password" "$s/pgpass" "$s/mqtt_server_password"
echo "deploy/secrets ready: docker compose -f deploy/compose.yaml up -d"
