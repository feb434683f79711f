"""The contract between gateway and server: what crosses MQTT and what both sides read.

    sample    a sample, its quality, machine states and counter roles
    wire      MQTT contract v1: topics, payloads, HMAC signatures, limits (docs/mqtt.md)
    yaml12    YAML 1.2 files and their validation errors, one line per problem
    secrets   keys and passwords read from files (read_secret)
    backoff   capped exponential backoff with full jitter, for every reconnect and retry loop
    topics    the MQTT topics, built and parsed
    identity  contract v2: the gateway's own Ed25519 key, its fingerprint, the Signer seam
    digest    contract v2: a batch's canonical digest and its signature (docs/mqtt.md)
    wire_v2   contract v2: the compact data payload, its format and decoder
    wire_v2_encode   ... and its encoder, sealing (digest + signature) and splitting

The gateway (which installs only the `agent` extra) and the server both import this
package; the server imports nothing else of the agent.
"""
