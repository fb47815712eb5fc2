"""An independent Kafka client (confluent-kafka) reads Strata's `events` topic: every event
the collector acknowledged is there once, as the JSON bus record, and the lake holds the same.

Runs against a real tansu broker (STRATA_TANSU_BIN, as tests/run.sh sets it). Without one the
test is skipped, unless STRATA_TEST_REQUIRE_KAFKA is set: then it fails."""

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest

from conftest import WRITE_KEY, Strata


def tansu_bin():
    path = os.environ.get("STRATA_TANSU_BIN") or shutil.which("tansu")
    if not path or not os.path.exists(path):
        if os.environ.get("STRATA_TEST_REQUIRE_KAFKA"):
            pytest.fail("STRATA_TEST_REQUIRE_KAFKA is set but no tansu binary (STRATA_TANSU_BIN)")
        pytest.skip("!!! no tansu binary: set STRATA_TANSU_BIN (tests/run.sh does) !!!")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker():
    binary = tansu_bin()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    workdir = tempfile.mkdtemp()
    log = open(os.path.join(workdir, "tansu.log"), "ab")
    proc = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        cwd=workdir, stdout=log, stderr=log)
    try:
        end = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "tansu exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < end, "tansu did not listen"
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def post_batch(url, events):
    body = json.dumps({"batch": events}).encode()
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    req = urllib.request.Request(f"{url}/v1/batch", data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(req, timeout=30) as res:
        assert res.status == 200
        return json.loads(res.read())


def read_topic(brokers, topic, expected, deadline_s=60):
    """Every record of `topic` from the start, with confluent-kafka, until `expected` events
    have been seen (bounded) and the end of each partition is reached."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"py-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        md = consumer.list_topics(topic, timeout=10)
        partitions = sorted(md.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records, at_end = [], set()
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            m = consumer.poll(0.5)
            if m is None:
                if len(records) >= expected and at_end == set(partitions):
                    break
                continue
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    at_end.add(m.partition())
                    continue
                raise AssertionError(m.error())
            at_end.discard(m.partition())
            records.append(m)
        return partitions, records
    finally:
        consumer.close()


def test_confluent_kafka_reads_strata_events(tmp_path, broker):
    s = Strata(tmp_path)
    s.cli("init", s.root)
    s.cli("apps", "create", "python", "--write-key", WRITE_KEY, "-c", s.config)
    text = open(s.config).read()
    text = text.replace('kind = "embedded"', 'kind = "kafka"', 1)
    text = text.replace('brokers = ""', f'brokers = "{broker}"', 1)
    # For consumers outside Strata: JSON records instead of the binary default (ADR 0027).
    assert 'record_format = "binary"' in text
    text = text.replace('record_format = "binary"', 'record_format = "json"', 1)
    open(s.config, "w").write(text)
    s.start()
    try:
        run = uuid.uuid4().hex[:8]
        sent = set()
        for b in range(5):
            events = [{
                "type": "track", "event": "Post Liked",
                "messageId": f"{run}-{b}-{i}", "userId": f"kafka-user-{i % 9}",
                "properties": {"b": b, "i": i},
            } for i in range(40)]
            assert post_batch(s.url, events)["accepted"] == 40
            sent.update(e["messageId"] for e in events)

        partitions, records = read_topic(broker, "events", len(sent))
        assert partitions == [0, 1, 2, 3], partitions  # bus.partitions = 4 by default
        ids = []
        for m in records:
            value = json.loads(m.value())
            assert value["k"] == "e", value
            event = value["v"]
            ids.append(event["message_id"])
            # properties travel as nested JSON (ADR 0012), exactly what the client sent.
            b, i = (int(x) for x in event["message_id"].split("-")[1:])
            assert event["properties"] == {"b": b, "i": i}, event
            # Keyed by user id; the record's timestamp is the producer's.
            assert m.key().decode() == event["user_id"]
            assert m.timestamp()[1] > 0
        assert sorted(ids) == sorted(sent), "topic holds each acknowledged event exactly once"
        # One user's events share a partition.
        by_user = {}
        for m in records:
            by_user.setdefault(m.key(), set()).add(m.partition())
        assert all(len(ps) == 1 for ps in by_user.values()), by_user

        s.wait_rows("SELECT count(*) AS n FROM ods.ods_event", len(sent))
    finally:
        s.stop()
    assert not os.path.exists(os.path.join(s.data, "bus")), "the embedded bus was opened"
