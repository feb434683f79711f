#!/bin/sh
# A private CA and a broker certificate for the demo and for trials (docs/deploy.md).
# For production, use your organisation's CA; keep ca.key offline.
#
#   deploy/certs/make-certs.sh OUT_DIR [BROKER_NAME ...]
#
# OUT_DIR gets ca.crt, ca.key (mode 600), broker.crt, broker.key (mode 600). The broker
# certificate is valid for BROKER_NAMEs (DNS names or IP addresses; default: broker,
# localhost, 127.0.0.1) for 825 days; the CA for 10 years. Existing files are kept: run
# again with new names after deleting broker.*.
set -eu
out=${1:?usage: make-certs.sh OUT_DIR [BROKER_NAME ...]}
shift
[ "$#" -gt 0 ] || set -- broker localhost 127.0.0.1
mkdir -p "$out"
umask 077
cd "$out"
if [ ! -f ca.key ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/O=factory-evidence/CN=factory-evidence demo CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout ca.key -out ca.crt 2>/dev/null
fi
if [ ! -f broker.key ]; then
    san=""
    for name in "$@"; do
        case "$name" in
            *:*) entry="IP:$name" ;;          # IPv6
            *[!0-9.]*) entry="DNS:$name" ;;
            *) entry="IP:$name" ;;            # IPv4
        esac
        san="${san:+$san,}$entry"
    done
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/O=factory-evidence/CN=$1" -keyout broker.key -out broker.csr 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' \
        "$san" > broker.ext
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
        -extfile broker.ext -out broker.crt 2>/dev/null
    rm -f broker.csr broker.ext ca.srl
fi
chmod 644 ca.crt broker.crt
chmod 600 ca.key broker.key
echo "$out: ca.crt (give it to gateways: mqtt.tls.ca_file), broker.crt, broker.key"
