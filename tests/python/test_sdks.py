"""Unmodified Segment and RudderStack Python SDKs deliver to Strata; pyiceberg reads the
same rows back from the SQL catalog Strata writes."""

import os
import uuid

from conftest import WRITE_KEY


def send_with_segment(url, run_id, n):
    from segment.analytics import Client

    errors = []
    client = Client(WRITE_KEY, host=url, sync_mode=False, on_error=lambda e, b: errors.append(e))
    for i in range(n):
        client.track(user_id=f"seg-{i % 7}", event="Post Liked",
                     properties={"run": run_id, "i": i, "sdk": "segment"})
    client.identify(user_id="seg-0", traits={"run": run_id, "plan": "pro"})
    client.page(user_id="seg-0", name="Home", properties={"run": run_id})
    client.flush()
    client.join()
    assert not errors, errors
    return n + 2


def send_with_rudder(url, run_id, n):
    from rudderstack.analytics.client import Client

    errors = []
    # gzip is on by default in this SDK: this also proves gzip bodies work.
    client = Client(WRITE_KEY, host=url, on_error=lambda e, b: errors.append(e))
    for i in range(n):
        client.track(user_id=f"rud-{i % 5}", event="Post Shared",
                     properties={"run": run_id, "i": i, "sdk": "rudder"})
    client.screen(user_id="rud-1", name="Feed", properties={"run": run_id})
    client.flush()
    client.join()
    assert not errors, errors
    return n + 1


def test_sdks_deliver_and_pyiceberg_reads(strata):
    run_id = uuid.uuid4().hex
    seg = send_with_segment(strata.url, run_id, 120)
    rud = send_with_rudder(strata.url, run_id, 80)
    total = seg + rud

    strata.wait_rows("SELECT count(*) AS n FROM ods.ods_event", total)

    rows = strata.sql(
        "SELECT library_name, type, count(*) AS n FROM ods.ods_event "
        "GROUP BY library_name, type ORDER BY library_name, type")
    by = {(r["library_name"], r["type"]): r["n"] for r in rows}
    assert all(k[0] for k in by), f"rows without context.library.name: {by}"
    assert sum(by[k] for k in by if k[1] == "track") == 200
    assert sum(by[k] for k in by if k[1] == "identify") == 1
    assert sum(by[k] for k in by if k[1] == "page") == 1
    assert sum(by[k] for k in by if k[1] == "screen") == 1

    # Enrichment happened server-side.
    rows = strata.sql("SELECT count(*) AS n FROM ods.ods_event WHERE server_ts IS NULL "
                      "OR event_ts IS NULL OR ip IS NULL")
    assert rows[0]["n"] == 0

    ids_strata = {r["message_id"] for r in strata.sql("SELECT message_id FROM ods.ods_event")}
    assert len(ids_strata) == total

    # pyiceberg opens the same SQL catalog and sees the same rows.
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(
        "strata",
        uri=f"sqlite:///{os.path.join(strata.data, 'catalog.db')}",
        warehouse=f"file://{os.path.join(strata.data, 'lake')}",
    )
    assert ("ods",) in catalog.list_namespaces()
    table = catalog.load_table("ods.ods_event")
    arrow = table.scan().to_arrow()
    assert arrow.num_rows == total
    assert set(arrow.column("message_id").to_pylist()) == ids_strata
    props = [p for p in arrow.column("properties").to_pylist() if p and run_id in p]
    assert len(props) == 202
    # Partition pruning on the identity partitions, and the bus position in the snapshot summary.
    liked = table.scan(row_filter="event_type == 'Post Liked'").to_arrow()
    assert liked.num_rows == 120
    assert [f.name for f in table.spec().fields] == ["dt", "hr", "event_type"]
    import json
    offsets = json.loads(table.current_snapshot().summary["strata.bus.events.offsets"])
    assert sum(offsets.values()) == total, offsets
