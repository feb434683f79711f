"""The broker the integration tests stand on is a real Mosquitto that delivers QoS 1."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness.broker import Broker


def test_mosquitto_delivers_qos1_between_two_clients(mosquitto: Broker) -> None:
    received: list[bytes] = []
    got = threading.Event()
    subscribed = threading.Event()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fixture-sub")
    sub.on_subscribe = lambda *_args: subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg.payload)
        got.set()

    sub.on_message = on_message
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fixture-pub")
    try:
        sub.subscribe("fe/v1/test/#", qos=1)
        assert subscribed.wait(5), "subscription was not acknowledged"
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        info = pub.publish("fe/v1/test/data", b'{"v":1}', qos=1)
        info.wait_for_publish(timeout=5)
        assert info.is_published()
        assert got.wait(5), "the message did not arrive"
        assert received == [b'{"v":1}']
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.loop_stop()
        sub.disconnect()
