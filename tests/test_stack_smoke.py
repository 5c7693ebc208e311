"""The dev stack is real: a Kafka broker kafka-python talks to, and a Redis with transactions."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

N_MESSAGES = 10_000


@pytest.mark.kafka
def test_kafka_round_trip_10k_messages_with_keys_headers_partitions_and_group_commits(
    kafka_bootstrap: str, topic_factory
) -> None:
    topic = topic_factory(partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5, acks="all")
    for i in range(N_MESSAGES):
        producer.send(
            topic,
            key=f"model-{i % 7}".encode(),
            value=f'{{"i": {i}}}'.encode(),
            headers=[("source", b"smoke"), ("seq", str(i).encode())],
        )
    producer.flush(timeout=60)
    producer.close()

    group = f"{topic}-group"
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    seen: list[int] = []
    partitions: Counter[int] = Counter()
    key_partition: dict[bytes, int] = {}
    deadline = time.monotonic() + 60
    while len(seen) < N_MESSAGES and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for r in records:
                headers = dict(r.headers)
                assert headers["source"] == b"smoke"
                assert int(headers["seq"]) == int(r.value.decode()[6:-1])
                # The default partitioner keeps one key on one partition.
                assert key_partition.setdefault(r.key, tp.partition) == tp.partition
                seen.append(int(headers["seq"]))
                partitions[tp.partition] += 1
        consumer.commit()
    consumer.close()

    assert sorted(seen) == list(range(N_MESSAGES)), "every message exactly once"
    assert set(partitions) == {0, 1} and sum(partitions.values()) == N_MESSAGES

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    committed = admin.list_group_offsets(group)[group]
    admin.close()
    assert {tp.partition: meta.offset for tp, meta in committed.items()} == {
        0: partitions[0],
        1: partitions[1],
    }

    # A new member of the same group resumes at the committed offsets: nothing left to read.
    again = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    assert {tp.partition: again.committed(tp) for tp in tps} == {0: partitions[0], 1: partitions[1]}
    again.close()


@pytest.mark.redis
def test_redis_multi_exec_round_trip(redis_factory) -> None:
    client, prefix = redis_factory()
    pipe = client.pipeline(transaction=True)
    pipe.set(f"{prefix}:state", b"\x00\x01binary")
    pipe.hset(f"{prefix}:offsets", mapping={"t:0": 10, "t:1": 20})
    pipe.incr(f"{prefix}:fence")
    results = pipe.execute()
    assert results == [True, 2, 1]
    assert client.get(f"{prefix}:state") == b"\x00\x01binary"
    assert client.hgetall(f"{prefix}:offsets") == {b"t:0": b"10", b"t:1": b"20"}

    # WATCH makes a transaction fail when another client changed the key in between.
    other = client.__class__(connection_pool=client.connection_pool)
    with client.pipeline(transaction=True) as pipe:
        pipe.watch(f"{prefix}:fence")
        other.incr(f"{prefix}:fence")
        pipe.multi()
        pipe.set(f"{prefix}:state", b"stale")
        with pytest.raises(Exception, match=r"[Ww]atch"):
            pipe.execute()
    assert client.get(f"{prefix}:state") == b"\x00\x01binary"
