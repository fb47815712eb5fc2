"""pyiceberg (PyPI) reads and writes Strata's tables on S3 through the same SQL catalog, with
its own S3 FileIO settings (s3.endpoint, ...): the S3 server is moto on loopback, the same
package the Rust tests use."""

import os
import re
import socket

import pytest

from conftest import Strata

BUCKET = "strata-py"
KEY, SECRET, REGION = "py-key", "py-secret", "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3():
    from moto.server import ThreadedMotoServer
    import boto3

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=KEY, aws_secret_access_key=SECRET,
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def set_lake_keys(config, keys):
    text = open(config).read()
    for k, v in keys.items():
        text, n = re.subn(rf"(?m)^{k} = .*$", f"{k} = {v}", text, count=1)
        assert n == 1, k
    open(config, "w").write(text)


def test_pyiceberg_reads_and_appends_strata_tables_on_s3(tmp_path, s3):
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog

    strata = Strata(tmp_path)
    strata.cli("init", strata.root)
    set_lake_keys(strata.config, {
        "warehouse": f'"s3://{BUCKET}/wh"',
        "s3_endpoint": f'"{s3}"',
        "s3_region": f'"{REGION}"',
        "s3_access_key_id": f'"{KEY}"',
        "s3_secret_access_key": f'"{SECRET}"',
        "s3_path_style": "true",
    })
    strata.sql(
        "CREATE NAMESPACE IF NOT EXISTS py; "
        "CREATE TABLE py.t (id BIGINT, name VARCHAR); "
        "INSERT INTO py.t SELECT value, concat('n', CAST(value AS VARCHAR)) "
        "FROM generate_series(1, 500); "
        "DELETE FROM py.t WHERE id % 5 = 0"
    )
    assert not os.path.exists(os.path.join(strata.data, "lake"))

    catalog = SqlCatalog(
        "strata",
        uri=f"sqlite:///{os.path.join(strata.data, 'catalog.db')}",
        warehouse=f"s3://{BUCKET}/wh",
        **{
            "s3.endpoint": s3,
            "s3.access-key-id": KEY,
            "s3.secret-access-key": SECRET,
            "s3.region": REGION,
            "s3.force-virtual-addressing": "false",
        },
    )
    table = catalog.load_table("py.t")
    assert table.metadata.location.startswith(f"s3://{BUCKET}/wh/")
    rows = table.scan().to_arrow()
    ids = sorted(rows.column("id").to_pylist())
    assert ids == [i for i in range(1, 501) if i % 5 != 0]
    # The ODS table Strata created on open is there too (empty).
    assert catalog.load_table("ods.ods_event").scan().to_arrow().num_rows == 0

    # pyiceberg writes to S3 through the same catalog; Strata reads it.
    table.append(pa.table({
        "id": pa.array([1000, 1001], pa.int64()),
        "name": pa.array(["py1", "py2"], pa.string()),
    }))
    got = strata.sql("SELECT count(*) AS n, max(id) AS m FROM py.t")
    assert got == [{"n": 402, "m": 1001}], got
