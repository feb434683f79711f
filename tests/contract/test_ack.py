"""Contract v2 acknowledgements and v2-signed JSON messages."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.contract import topics
from edge_agent.contract.ack import AckError, encode_ack, parse_ack, ranges
from edge_agent.contract.identity import FileSigner
from edge_agent.contract.wire import (
    SignatureError,
    SignatureMismatchError,
    encode_message,
    encode_message_v2,
    verify_v2,
)


def test_an_ack_round_trips_as_ranges_and_lists_every_key() -> None:
    stored = [(2, 1), (1, 7), (1, 5), (1, 6), (1, 9), (1, 6)]
    payload = encode_ack(stored, [(1, 8, "signature: does not verify")])
    assert json.loads(payload)["stored"] == [[1, 5, 7], [1, 9, 9], [2, 1, 1]]
    ack = parse_ack(payload)
    assert sorted(ack.keys()) == [(1, 5), (1, 6), (1, 7), (1, 8), (1, 9), (2, 1)]
    assert ack.dead == [(1, 8, "signature: does not verify")]
    assert ranges([]) == []


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"not json", "not a JSON object"),
        (b"[]", "not a JSON object"),
        (b'{"v":1,"stored":[[1,1,1]]}', '"v" is 1'),
        (b'{"v":2,"stored":[]}', "acknowledges no batch"),
        (b'{"v":2,"stored":[[1,5,4]]}', "before first_seq"),
        (b'{"v":2,"stored":[[1,-1,4]]}', "stored[0]: -1"),
        (b'{"v":2,"stored":[[1,1]]}', "stored[0]: not [boot"),
        (b'{"v":2,"dead":[[1,1,2]]}', "dead[0]: not [boot, seq, reason]"),
        (b'{"v":2,"stored":[[1,1,1]],"extra":1}', "unknown member"),
        (b'{"v":2,"stored":[[true,1,1]]}', "stored[0]: True"),
    ],
)
def test_a_malformed_ack_is_refused_naming_what_is_wrong(payload: bytes, says: str) -> None:
    with pytest.raises(AckError, match=says.replace("[", r"\[")):
        parse_ack(payload)


def test_the_ack_topic_is_below_the_gateways_prefix() -> None:
    prefix = topics.prefix("e", "s", "gw-01")
    assert topics.ack_topic(prefix) == "fe/v1/e/s/gw-01/ack"
    assert topics.parse_stored(topics.ack_topic(prefix)) is None  # the server never stores it


def test_a_v2_message_verifies_only_with_its_key_and_untouched() -> None:
    signer = FileSigner(Ed25519PrivateKey.generate())
    payload = encode_message_v2({"gw": "gw-01", "state": "online"}, signer)
    assert verify_v2(payload, signer.public_key())["state"] == "online"
    other = FileSigner(Ed25519PrivateKey.generate()).public_key()
    with pytest.raises(SignatureMismatchError):
        verify_v2(payload, other)
    with pytest.raises(SignatureMismatchError):
        verify_v2(payload.replace(b"online", b"onlinf"), signer.public_key())
    with pytest.raises(SignatureError, match="128 hex digits"):  # a v1 HMAC is no v2 signature
        verify_v2(encode_message({"gw": "gw-01"}, b"k" * 32), signer.public_key())
