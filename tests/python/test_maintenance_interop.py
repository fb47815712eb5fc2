"""pyiceberg (PyPI) reads a table after `strata table compact` and `expire-snapshots` with the
same rows as Strata, and still time-travels to the snapshots expiry kept."""

import base64
import json
import os
import urllib.request

from conftest import WRITE_KEY

TABLE = "ods.ods_event"


def catalog_of(strata):
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(
        "strata",
        uri=f"sqlite:///{os.path.join(strata.data, 'catalog.db')}",
        warehouse=f"file://{os.path.join(strata.data, 'lake')}",
    )


def post_batch(url, prefix, n):
    body = json.dumps({
        "batch": [
            {"type": "track", "event": "Post Liked", "messageId": f"{prefix}-{i}",
             "userId": f"u{i % 5}", "properties": {"i": i}}
            for i in range(n)
        ]
    }).encode()
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    req = urllib.request.Request(
        f"{url}/v1/batch", data=body, method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        assert res.status == 200


def strata_ids(strata, suffix=""):
    return sorted(r["message_id"] for r in strata.sql(f"SELECT message_id FROM {TABLE}{suffix}"))


def pyiceberg_ids(catalog, snapshot_id=None):
    scan = catalog.load_table(TABLE).scan(selected_fields=("message_id",), snapshot_id=snapshot_id)
    return sorted(scan.to_arrow().column("message_id").to_pylist())


def table_json(strata, *args):
    res = strata.cli("table", *args, TABLE, "-c", strata.config, "--format", "json")
    return [json.loads(l) for l in res.stdout.splitlines() if l.strip()]


def test_pyiceberg_reads_compacted_and_expired_tables(strata):
    for b in range(5):
        post_batch(strata.url, f"b{b}", 8)
        strata.wait_rows(f"SELECT count(*) FROM {TABLE}", 8 * (b + 1))
    strata.stop()
    catalog = catalog_of(strata)
    before = strata_ids(strata)
    assert len(before) == 40
    assert pyiceberg_ids(catalog) == before
    pre_compaction = table_json(strata, "snapshots")[-1]["snapshot_id"]

    strata.cli("table", "compact", TABLE, "--min-input-files", "2", "-c", strata.config)
    files = [f for f in table_json(strata, "files") if f["content"] == "data"]
    assert len(files) < 5, files
    snapshot = catalog.load_table(TABLE).current_snapshot()
    assert snapshot.summary.operation.value == "replace"
    assert pyiceberg_ids(catalog) == before
    assert strata_ids(strata) == before

    # Keep the compaction and the snapshot before it: both read the same in both engines.
    strata.cli("table", "expire-snapshots", TABLE, "--older-than", "0s", "--retain-last", "2",
               "-c", strata.config)
    snapshots = table_json(strata, "snapshots")
    assert [s["snapshot_id"] for s in snapshots][0] == pre_compaction
    assert pyiceberg_ids(catalog, snapshot_id=pre_compaction) == before
    assert strata_ids(strata, f" VERSION AS OF {pre_compaction}") == before
    assert pyiceberg_ids(catalog) == before
    assert len(catalog.load_table(TABLE).metadata.snapshots) == 2
