"""pyiceberg's RestCatalog against the Iceberg REST catalog `strata serve` exposes under
/iceberg: it lists and loads Strata's tables and reads the events the collector acknowledged,
creates a table and appends to it (read back by `strata sql`), and appends to ods.ods_event
while the lake sink commits to it, losing neither side's rows."""

import base64
import datetime
import json
import threading
import urllib.request

import pytest

from conftest import WRITE_KEY


def post_batch(url, prefix, n):
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    events = [{"type": "track", "event": "Post Viewed", "messageId": f"{prefix}-{i}",
               "userId": f"user-{i % 7}", "timestamp": now} for i in range(n)]
    body = json.dumps({"batch": events}).encode()
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    req = urllib.request.Request(f"{url}/v1/batch", data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(req, timeout=30) as res:
        assert res.status == 200
        return json.loads(res.read())["accepted"]


def rest_catalog(strata, token):
    from pyiceberg.catalog.rest import RestCatalog

    return RestCatalog("strata", uri=f"{strata.url}/iceberg", token=token)


def new_token(strata, name):
    return strata.cli("tokens", "create", name, "-c", strata.config).stdout.strip()


def test_rest_catalog_refuses_a_wrong_token(strata):
    from pyiceberg.exceptions import UnauthorizedError

    new_token(strata, "real")
    with pytest.raises(UnauthorizedError):
        rest_catalog(strata, "stk_wrong").list_namespaces()


def test_pyiceberg_reads_creates_and_appends_through_rest(strata):
    import pyarrow as pa

    acked = sum(post_batch(strata.url, f"py-rest-{b}", 50) for b in range(3))
    assert acked == 150
    strata.wait_rows("SELECT count(*) FROM ods.ods_event", acked)

    cat = rest_catalog(strata, new_token(strata, "pyiceberg"))
    assert ("ods",) in cat.list_namespaces()
    tables = cat.list_tables("ods")
    assert ("ods", "ods_event") in tables and ("ods", "ods_event_rejected") in tables

    events = cat.load_table("ods.ods_event").scan().to_arrow()
    assert events.num_rows == acked
    ids = set(events.column("message_id").to_pylist())
    assert ids == {f"py-rest-{b}-{i}" for b in range(3) for i in range(50)}

    # A table made and filled by pyiceberg through the REST catalog, read by `strata sql`.
    cat.create_namespace("py", {"owner": "pytest"})
    assert cat.load_namespace_properties("py")["owner"] == "pytest"
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                     "name": pa.array(["a", "b", None], pa.string())})
    items = cat.create_table("py.items", schema=data.schema)
    items.append(data)
    items.append(pa.table({"id": pa.array([4], pa.int64()), "name": pa.array(["d"], pa.string())}))
    rows = strata.sql("SELECT id, name FROM py.items ORDER BY id")
    assert rows == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3},
                    {"id": 4, "name": "d"}]
    assert cat.load_table("py.items").scan().to_arrow().num_rows == 4

    cat.drop_table("py.items")
    assert ("py", "items") not in cat.list_tables("py")
    cat.drop_namespace("py")
    assert ("py",) not in cat.list_namespaces()


def test_pyiceberg_appends_racing_the_lake_sink_lose_nothing(strata):
    """pyiceberg appends rows to ods.ods_event through the REST catalog while the collector
    ingests and the lake sink commits every 200 ms. A pyiceberg commit that finds main moved
    gets 409 CommitFailedException and is retried on a fresh load (the client's job). In the
    end every acknowledged event and every committed pyiceberg row is there, once; and after
    a restart the sink resumes from its position rather than re-reading the bus."""
    import pyarrow as pa
    from pyiceberg.exceptions import CommitFailedException

    acked = post_batch(strata.url, "seed", 20)
    strata.wait_rows("SELECT count(*) FROM ods.ods_event", acked)
    token = new_token(strata, "racer")
    cat = rest_catalog(strata, token)
    template = cat.load_table("ods.ods_event").scan().to_arrow().slice(0, 5)

    sent = []

    def ingest():
        for b in range(30):
            sent.append(post_batch(strata.url, f"race-{b}", 20))

    collector = threading.Thread(target=ingest)
    collector.start()
    appended, conflicts = 0, 0
    for k in range(8):
        ids = pa.array([f"pyiceberg-{k}-{i}" for i in range(template.num_rows)], pa.string())
        rows = template.set_column(template.schema.get_field_index("message_id"),
                                   template.schema.field("message_id"), ids)
        for _attempt in range(50):
            try:
                cat.load_table("ods.ods_event").append(rows)
                appended += rows.num_rows
                break
            except CommitFailedException:
                conflicts += 1
        else:
            raise AssertionError("append kept conflicting")
    collector.join()
    acked += sum(sent)
    assert acked == 620

    total = acked + appended
    strata.wait_rows("SELECT count(*) FROM ods.ods_event", total)
    got = strata.sql("SELECT count(DISTINCT message_id) AS n FROM ods.ods_event")
    assert got == [{"n": total}]
    assert strata.sql("SELECT count(*) AS n FROM ods.ods_event WHERE message_id LIKE 'pyiceberg-%'") \
        == [{"n": appended}]
    # pyiceberg's snapshots carry the sink's bus position forward (ADR 0013), like every
    # Strata writer's: no snapshot of the table lacks it.
    snapshots = cat.load_table("ods.ods_event").metadata.snapshots
    assert len(snapshots) > 8
    assert all("strata.bus.events.offsets" in s.summary.additional_properties for s in snapshots)
    print(f"pyiceberg appends: {appended} rows, {conflicts} conflicts retried")

    # The sink's bus position survived the foreign snapshots: a restart re-reads nothing.
    strata.stop()
    strata.start()
    acked += post_batch(strata.url, "after-restart", 10)
    strata.wait_rows("SELECT count(*) FROM ods.ods_event", acked + appended)
    cat = rest_catalog(strata, token)  # the restarted server listens on a new port
    assert cat.load_table("ods.ods_event").scan().to_arrow().num_rows == acked + appended
