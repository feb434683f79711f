#!/bin/sh
# The demo profile's gateway: the simulated plant and the edge agent in one container
# (the agent reaches the simulators on 127.0.0.1), publishing over TLS with the
# identity that `ingest-server gateway add` wrote into /bundle.
set -eu
cd /var/lib/factory-evidence
factory-sim run --ready-file sim-ready.json &
sim=$!
trap 'kill "$sim" 2>/dev/null' EXIT
i=0
until [ -s sim-ready.json ]; do
    i=$((i + 1)); [ "$i" -le 60 ] || { echo "the simulators did not start" >&2; exit 1; }
    sleep 1
done
factory-sim agent-config --ready-file sim-ready.json --mqtt-url mqtts://mosquitto:8883 \
    --mqtt-username hf-precision.hf-plant1.gw-01 --mqtt-password-file /bundle/mqtt.password \
    --mqtt-ca /certs/ca.crt --hmac-key-file /bundle/gateway.key \
    --outbox /var/lib/factory-evidence/outbox.db --out agent.yaml
# the broker admits a gateway only with its login as client id (docs/deploy.md, "The
# broker"): the agent's client id is its username unless the config says otherwise
edge-agent check agent.yaml
exec edge-agent run agent.yaml
