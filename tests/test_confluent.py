"""``kafka.library: confluent-kafka``: settings, errors and the outbox on librdkafka.

The service itself runs on it in tests/test_service_e2e.py (end to end, SIGTERM/SIGKILL restarts,
two instances and a takeover) and in tests/test_security.py (SASL, TLS).
"""

from __future__ import annotations

import time
import typing
import uuid
from typing import Any

import confluent_kafka
import pytest
from kafka import TopicPartition
from pydantic import SecretStr

from streamdrift._config_kafka import KafkaClientConfig
from streamdrift._kafka_confluent import UNSUPPORTED, librdkafka_settings
from streamdrift.config import ConfigValidationError, parse_config
from streamdrift.errors import ConfigError, ConnectError, DeliveryError
from streamdrift.events import RawRecord
from streamdrift.kafka import Outbox, make_consumer, make_producer
from tests.service_harness import free_port, produce


def _config(bootstrap: str, topic: str = "in", **client: Any) -> Any:
    return parse_config(
        {
            "kafka": {
                "library": "confluent-kafka",
                "bootstrap_servers": bootstrap,
                "input_topics": [topic],
                "group_id": f"g-{uuid.uuid4().hex[:8]}",
                "client": client,
            }
        }
    )


def _sample(name: str, annotation: Any) -> Any:
    """A valid value of a ``kafka.client`` field, for librdkafka to check."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    literal = next((a for a in args if typing.get_origin(a) is typing.Literal), None)
    if literal is not None:
        return typing.get_args(literal)[0]
    if bool in args:
        return True
    if int in args:
        return 30_000 if name.endswith("_ms") else 2_000_000
    if SecretStr in args:
        return SecretStr("secret")
    return "/dev/null" if name.startswith("ssl_") and name != "ssl_ciphers" else "x"


def test_every_client_setting_is_a_librdkafka_property_librdkafka_accepts() -> None:
    values = {
        name: _sample(name, field.annotation)
        for name, field in KafkaClientConfig.model_fields.items()
        if name not in UNSUPPORTED
    }
    values["ssl_ciphers"] = "HIGH"
    values["security_protocol"] = "PLAINTEXT"
    values["sasl_mechanism"] = "PLAIN"
    values.update(linger_ms=5, delivery_timeout_ms=120_000, retry_backoff_ms=100)
    values.update(fetch_max_wait_ms=500, heartbeat_interval_ms=3000, acks="all")
    client = KafkaClientConfig(**values)
    for role, factory in (("consumer", confluent_kafka.Consumer), ("producer", None)):
        given = client.kwargs(role)  # type: ignore[arg-type]
        settings = librdkafka_settings(given)
        assert len(settings) == len(given) - 1  # all but bootstrap_timeout_ms (ours)
        settings = {k: v for k, v in settings.items() if not k.startswith(("ssl.", "sasl."))}
        settings["bootstrap.servers"] = "127.0.0.1:1"
        if factory is None:
            confluent_kafka.Producer(settings).flush(0)  # unknown or ill-typed: raises here
        else:
            factory({**settings, "group.id": "g"}).close()
    # Values librdkafka refuses are a configuration error, not a traceback.
    bad = _config("127.0.0.1:1", fetch_max_bytes=1000)
    with pytest.raises(ConfigError, match=r"refused by librdkafka.*fetch.max.bytes"):
        make_consumer(bad)
    assert librdkafka_settings({"ssl_check_hostname": False, "acks": "all"}) == {
        "ssl.endpoint.identification.algorithm": "none",
        "acks": "all",
    }


def test_check_config_names_a_setting_librdkafka_has_no_equivalent_for() -> None:
    with pytest.raises(ConfigValidationError, match=r"sasl_kerberos_domain_name.*kafka-python"):
        _config("127.0.0.1:9092", sasl_kerberos_domain_name="EXAMPLE.COM")
    # the same setting is fine with kafka-python
    parse_config(
        {
            "kafka": {
                "input_topics": ["in"],
                "client": {"sasl_kerberos_domain_name": "EXAMPLE.COM"},
            }
        }
    )


def test_no_broker_is_a_connect_error_within_the_bootstrap_timeout() -> None:
    config = _config(f"127.0.0.1:{free_port()}", bootstrap_timeout_ms=1500)
    for make in (make_consumer, make_producer):
        started = time.monotonic()
        with pytest.raises(ConnectError, match=r"confluent-kafka\) cannot connect.*bootstrap"):
            make(config)
        assert time.monotonic() - started < 10


@pytest.mark.kafka
def test_consumer_reads_in_batches_with_watermarks_pause_and_commits(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    topic = topic_factory(partitions=2)
    values = [f'{{"i": {i}}}'.encode() for i in range(300)]
    produce(kafka_bootstrap, topic, values, key=b"k")  # one key: one partition
    config = _config(kafka_bootstrap, topic)
    consumer = make_consumer(config)
    assigned: list[Any] = []

    class Listener:
        def on_partitions_assigned(self, tps: list[Any]) -> None:
            assigned.extend(tps)
            for tp in tps:
                consumer.seek(tp, 100)  # like a resume from a checkpoint at offset 100

        def on_partitions_revoked(self, tps: list[Any]) -> None:
            pass

    consumer.subscribe([topic], listener=Listener())
    got: list[RawRecord] = []
    deadline = time.monotonic() + 30
    while len(got) < 200 and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500, max_records=50).items():
            assert isinstance(tp, TopicPartition) and len(records) <= 50
            got.extend(records)
    assert sorted(tp.partition for tp in assigned) == [0, 1]
    assert [r.offset for r in got] == list(range(100, 300))
    assert [r.value for r in got] == values[100:]
    assert all(r.key == b"k" and r.timestamp_ms for r in got)
    (tp,) = {TopicPartition(r.topic, r.partition) for r in got}
    assert consumer.highwater(tp) == 300
    consumer.pause(*consumer.assignment())
    consumer.resume(*consumer.assignment())
    consumer.commit({tp: 300})
    reader = make_consumer(config, client_id="offsets")
    assert reader.committed(tp) == 300
    assert reader.committed(TopicPartition(topic, 1 - tp.partition)) is None
    reader.close()
    consumer.close()


@pytest.mark.kafka
def test_outbox_on_confluent_keeps_refused_messages_and_names_the_reason(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    topic = topic_factory()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": "2000"})]
    )
    admin.close()
    outbox = Outbox(make_producer(_config(kafka_bootstrap, "in")), max_attempts=2, backoff_s=0.1)
    outbox.send(topic, b"small", b"k")
    outbox.flush(timeout_s=30)
    assert outbox.n_sent == 1 and outbox.pending == 0
    outbox.send(topic, b"x" * 5000, b"k")
    with pytest.raises(DeliveryError, match=r"1 message\(s\).*not acknowledged.*(?i:too large)"):
        outbox.flush(timeout_s=10)
    assert outbox.pending == 1  # kept for the next checkpoint attempt, not dropped
    outbox.close()
