"""Reads the lake written by `interop_write_sample_lake` with pyiceberg's SqlCatalog.

    STRATA_INTEROP_DIR=/tmp/lake cargo nextest run -p strata-lake --run-ignored only interop
    python3 crates/strata-lake/tests/interop/pyiceberg_read.py /tmp/lake

Needs `pip install "pyiceberg[sql-sqlite,pyarrow]"`.
"""

import json
import os
import sys

from pyiceberg.catalog.sql import SqlCatalog

data = os.path.abspath(sys.argv[1])
catalog = SqlCatalog(
    "strata",
    uri=f"sqlite:///{data}/catalog.db",
    warehouse=f"file://{data}/lake",
)
events = catalog.load_table("ods.ods_event")
rows = events.scan().to_arrow()
assert rows.num_rows == 90, rows.num_rows
assert rows.column_names[:5] == ["message_id", "app", "type", "event", "event_type"], rows.column_names
assert len(set(rows.column("message_id").to_pylist())) == 90
followed = events.scan(row_filter="event_type == 'Followed'").to_arrow()
assert followed.num_rows == 40, followed.num_rows  # odd i, minus i % 10 == 9
summary = events.current_snapshot().summary
offsets = json.loads(summary["strata.bus.events.offsets"])
assert sum(offsets.values()) == 100, offsets
print("spec:", events.spec())
rejected = catalog.load_table("ods.ods_event_rejected").scan().to_arrow()
assert rejected.num_rows == 10, rejected.num_rows
print("pyiceberg read", rows.num_rows, "events,", rejected.num_rows, "rejected; offsets", offsets)
