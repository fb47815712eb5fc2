"""pyiceberg (PyPI) and Strata on the same SQL catalog: every table Strata writes — after
inserts, deletes, updates, merges, partition overwrites and schema changes, in both write
modes — reads the same in pyiceberg, and tables pyiceberg writes (append, overwrite, delete)
read the same in Strata."""

import datetime
import decimal
import os

import pytest

from conftest import Strata


@pytest.fixture
def lake(tmp_path):
    s = Strata(tmp_path)
    s.cli("init", s.root)
    return s


def catalog_of(strata):
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(
        "strata",
        uri=f"sqlite:///{os.path.join(strata.data, 'catalog.db')}",
        warehouse=f"file://{os.path.join(strata.data, 'lake')}",
    )


def plain(v):
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    return v


def strata_rows(strata, table, columns):
    rows = strata.sql(f"SELECT {', '.join(columns)} FROM {table}")
    return sorted(tuple(plain(r.get(c)) for c in columns) for r in rows)


def pyiceberg_rows(catalog, table, columns):
    arrow = catalog.load_table(table).scan().to_arrow()
    data = arrow.select(columns).to_pylist()
    return sorted(tuple(plain(r[c]) for c in columns) for r in data)


def same_rows(strata, catalog, table, columns, expected_count=None):
    ours = strata_rows(strata, table, columns)
    theirs = pyiceberg_rows(catalog, table, columns)
    assert ours == theirs, f"{table}: strata {ours} != pyiceberg {theirs}"
    if expected_count is not None:
        assert len(ours) == expected_count, ours
    return ours


@pytest.mark.parametrize("mode", ["merge-on-read", "copy-on-write"])
def test_pyiceberg_reads_what_strata_writes(lake, mode):
    lake.sql("CREATE NAMESPACE app")
    props = ", ".join(f"'write.{op}.mode' = '{mode}'" for op in ("delete", "update", "merge"))
    lake.sql(
        "CREATE TABLE app.users (user_id BIGINT NOT NULL, name STRING, score INT, "
        "ts TIMESTAMP, dt DATE) PARTITIONED BY (dt, bucket(4, user_id)) "
        f"TBLPROPERTIES ({props})"
    )
    catalog = catalog_of(lake)
    cols = ["user_id", "name", "score", "ts", "dt"]
    assert [f.name for f in catalog.load_table("app.users").spec().fields] == [
        "dt", "user_id_bucket"]

    lake.sql(
        "INSERT INTO app.users VALUES "
        "(1, 'ann', 10, TIMESTAMP '2026-11-20 10:00:00', DATE '2026-11-20'), "
        "(2, 'bob', 20, TIMESTAMP '2026-11-20 11:00:00', DATE '2026-11-20'), "
        "(3, 'cy', 30, TIMESTAMP '2026-11-21 09:30:00', DATE '2026-11-21'), "
        "(4, 'di', 40, TIMESTAMP '2026-11-21 12:00:00', DATE '2026-11-21'), "
        "(5, 'ed', 50, TIMESTAMP '2026-11-22 08:00:00', DATE '2026-11-22')"
    )
    same_rows(lake, catalog, "app.users", cols, 5)

    lake.sql("DELETE FROM app.users WHERE score > 40")
    same_rows(lake, catalog, "app.users", cols, 4)

    lake.sql("UPDATE app.users SET score = score * 2, name = upper(name) WHERE user_id <= 2")
    rows = same_rows(lake, catalog, "app.users", cols, 4)
    assert (1, "ANN", 20, "2026-11-20T10:00:00", "2026-11-20") in rows

    lake.sql("CREATE TABLE app.changes (user_id BIGINT, name STRING, score INT, ts TIMESTAMP, "
             "dt DATE, op STRING)")
    lake.sql(
        "INSERT INTO app.changes VALUES "
        "(2, 'bob', 21, TIMESTAMP '2026-11-20 11:00:00', DATE '2026-11-20', 'U'), "
        "(3, NULL, NULL, NULL, DATE '2026-11-21', 'D'), "
        "(6, 'fay', 60, TIMESTAMP '2026-11-22 10:00:00', DATE '2026-11-22', 'I')"
    )
    lake.sql(
        "MERGE INTO app.users t USING (SELECT * FROM app.changes) s ON t.user_id = s.user_id "
        "WHEN MATCHED AND s.op = 'D' THEN DELETE "
        "WHEN MATCHED THEN UPDATE SET * "
        "WHEN NOT MATCHED AND s.op <> 'D' THEN INSERT *"
    )
    rows = same_rows(lake, catalog, "app.users", cols, 4)
    assert [r[0] for r in rows] == [1, 2, 4, 6]

    # Dynamic overwrite: the (dt, bucket) partitions the query writes are replaced whole.
    lake.sql("INSERT OVERWRITE app.users SELECT user_id, 'new', score + 1, ts, dt "
             "FROM app.users WHERE dt = DATE '2026-11-21'")
    rows = same_rows(lake, catalog, "app.users", cols, 4)
    assert [r[1] for r in rows] == ["ANN", "bob", "new", "fay"]

    lake.sql("ALTER TABLE app.users ADD COLUMN country STRING")
    lake.sql("ALTER TABLE app.users RENAME COLUMN name TO full_name")
    lake.sql("ALTER TABLE app.users ALTER COLUMN score TYPE BIGINT")
    cols = ["user_id", "full_name", "score", "ts", "dt", "country"]
    # Each schema change adds a snapshot under the new schema (same files), so both engines
    # read the new columns before anything is written with them.
    rows = same_rows(lake, catalog, "app.users", cols, 4)
    assert (1, "ANN", 20, "2026-11-20T10:00:00", "2026-11-20", None) in rows
    lake.sql("UPDATE app.users SET country = 'NO' WHERE user_id = 1")
    rows = same_rows(lake, catalog, "app.users", cols, 4)
    assert (1, "ANN", 20, "2026-11-20T10:00:00", "2026-11-20", "NO") in rows

    # CREATE TABLE AS SELECT, unpartitioned.
    lake.sql("CREATE TABLE app.by_day AS SELECT dt, count(*) AS n FROM app.users GROUP BY dt")
    same_rows(lake, catalog, "app.by_day", ["dt", "n"], 3)

    # Snapshot history is plain Iceberg: pyiceberg sees every operation.
    snapshots = sorted(catalog.load_table("app.users").snapshots(),
                       key=lambda s: s.sequence_number)
    ops = [s.summary.operation.value for s in snapshots]
    assert ops == ["append", "delete", "overwrite", "overwrite", "overwrite",
                   "append", "append", "append", "overwrite"], ops


def test_strata_reads_what_pyiceberg_writes(lake):
    import pyarrow as pa
    from pyiceberg.expressions import EqualTo
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import DateType, LongType, NestedField, StringType

    catalog = catalog_of(lake)
    catalog.create_namespace("py")
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "name", StringType(), required=False),
        NestedField(3, "dt", DateType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=3, field_id=1000,
                                        transform=IdentityTransform(), name="dt"))
    table = catalog.create_table("py.t", schema=schema, partition_spec=spec)
    arrow_schema = pa.schema([pa.field("id", pa.int64(), nullable=False),
                              pa.field("name", pa.string()), pa.field("dt", pa.date32())])
    d1, d2 = datetime.date(2026, 11, 20), datetime.date(2026, 11, 21)

    table.append(pa.Table.from_pylist(
        [{"id": 1, "name": "a", "dt": d1}, {"id": 2, "name": "b", "dt": d1},
         {"id": 3, "name": "c", "dt": d2}], schema=arrow_schema))
    cols = ["id", "name", "dt"]
    same_rows(lake, catalog, "py.t", cols, 3)

    table = catalog.load_table("py.t")
    table.overwrite(pa.Table.from_pylist([{"id": 4, "name": "d", "dt": d2}], schema=arrow_schema),
                    overwrite_filter=EqualTo("dt", d2.isoformat()))
    rows = same_rows(lake, catalog, "py.t", cols, 3)
    assert [r[0] for r in rows] == [1, 2, 4]

    table = catalog.load_table("py.t")
    table.delete(delete_filter=EqualTo("id", 2))
    rows = same_rows(lake, catalog, "py.t", cols, 2)
    assert [r[0] for r in rows] == [1, 4]

    # And Strata writes on top of pyiceberg's table, which pyiceberg reads back.
    lake.sql("UPDATE py.t SET name = 'z' WHERE id = 1")
    lake.sql("INSERT INTO py.t VALUES (5, 'e', DATE '2026-11-22')")
    rows = same_rows(lake, catalog, "py.t", cols, 3)
    assert rows == [(1, "z", "2026-11-20"), (4, "d", "2026-11-21"), (5, "e", "2026-11-22")]
