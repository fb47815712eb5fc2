"""Feast's own Python client (PyPI `feast`) against Strata's feature server.

Run by `crates/strata-features/tests/serve/feast_client.rs`, which starts the server with
Feast's documented `driver_hourly_stats` rows (drivers 1001-1003) and passes the server's URL
and a `serve` token: a Feast feature repo whose online store is `type: remote` pointing at
Strata, its bearer token given as Feast's `oidc` auth `token`, reads features with
`FeatureStore.get_online_features` — by feature list, by feature service, with full feature
names. Prints one JSON line per read for the Rust test to check, exits non-zero on failure.

Usage: feast_remote_client.py URL TOKEN
"""

import json
import os
import sys
import tempfile
from datetime import timedelta


def main(url, token):
    from feast import (
        Entity,
        FeatureService,
        FeatureStore,
        FeatureView,
        Field,
        FileSource,
        ValueType,
    )
    from feast.types import Float64, Int64

    repo = tempfile.mkdtemp(prefix="feast-repo-")
    with open(os.path.join(repo, "feature_store.yaml"), "w") as f:
        f.write(
            f"""project: strata_interop
registry: {os.path.join(repo, "registry.db")}
provider: local
online_store:
  type: remote
  path: {url}
offline_store:
  type: file
auth:
  type: oidc
  token: {token}
entity_key_serialization_version: 3
"""
        )
    store = FeatureStore(repo_path=repo)
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="driver_hourly_stats_source",
        path=os.path.join(repo, "driver_stats.parquet"),
        timestamp_field="event_timestamp",
    )
    view = FeatureView(
        name="driver_hourly_stats",
        entities=[driver],
        ttl=timedelta(days=36500),
        schema=[
            Field(name="conv_rate", dtype=Float64),
            Field(name="acc_rate", dtype=Float64),
            Field(name="avg_daily_trips", dtype=Int64),
        ],
        online=True,
        source=source,
    )
    service = FeatureService(name="driver_activity", features=[view])
    store.apply([driver, view, service])

    rows = [{"driver_id": 1001}, {"driver_id": 1002}, {"driver_id": 1003}]
    by_list = store.get_online_features(
        features=[
            "driver_hourly_stats:conv_rate",
            "driver_hourly_stats:acc_rate",
            "driver_hourly_stats:avg_daily_trips",
        ],
        entity_rows=rows,
    ).to_dict()
    print(json.dumps({"read": "features", "answer": by_list}))
    by_service = store.get_online_features(
        features=store.get_feature_service("driver_activity"),
        entity_rows=rows + [{"driver_id": 9999}],
        full_feature_names=True,
    ).to_dict()
    print(json.dumps({"read": "service", "answer": by_service}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
