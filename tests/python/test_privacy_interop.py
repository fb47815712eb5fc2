"""pyiceberg (PyPI) reads the tables `strata privacy forget` rewrote and expired: the same rows
as Strata, none of the forgotten users, and every file its scan plans exists."""

import base64
import json
import os
import urllib.request

from conftest import WRITE_KEY


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
             "userId": f"person-{i % 5}", "properties": {"i": i}}
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


def planned_paths(table):
    paths = []
    for task in table.scan().plan_files():
        paths.append(task.file.file_path)
        paths.extend(d.file_path for d in task.delete_files)
    return paths


def local(path):
    return path[len("file://"):] if path.startswith("file://") else path


def test_pyiceberg_reads_tables_after_forget(strata):
    for b in range(3):
        post_batch(strata.url, f"b{b}", 10)
        strata.wait_rows("SELECT count(*) FROM ods.ods_event", 10 * (b + 1))
    strata.sql("CREATE TABLE ods.ods_users (user_id BIGINT, name STRING)")
    strata.sql("INSERT INTO ods.ods_users VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')")
    # A position delete, and a kept row's update (merge-on-read) before the erasure.
    strata.sql("DELETE FROM ods.ods_users WHERE user_id = 4")
    strata.sql("UPDATE ods.ods_users SET name = 'bb' WHERE user_id = 2")

    res = strata.cli("privacy", "forget", "person-1", "3", "-c", strata.config, "--json")
    report = json.loads(res.stdout)
    assert report["complete"] is True, report
    assert report["rows_removed"] == 6 + 1, report
    strata.stop()

    catalog = catalog_of(strata)
    events = catalog.load_table("ods.ods_event")
    rows = events.scan(selected_fields=("message_id", "user_id")).to_arrow().to_pylist()
    assert len(rows) == 24
    assert not [r for r in rows if r["user_id"] == "person-1"]
    strata_ids = sorted(r["message_id"] for r in strata.sql("SELECT message_id FROM ods.ods_event"))
    assert sorted(r["message_id"] for r in rows) == strata_ids
    # No snapshot older than the erasure's survives (they held the user's rows).
    erased = next(t for t in report["lake"]["tables"] if t["table"] == "ods.ods_event")
    first = events.metadata.snapshot_by_id(erased["snapshot_id"])
    assert first is not None and first.summary.operation.value == "overwrite"
    assert all(s.sequence_number >= first.sequence_number for s in events.metadata.snapshots)

    users = catalog.load_table("ods.ods_users")
    got = sorted((r["user_id"], r["name"]) for r in users.scan().to_arrow().to_pylist())
    assert got == [(1, "a"), (2, "bb")]
    for table in (events, users):
        for path in planned_paths(table):
            assert os.path.exists(local(path)), path
