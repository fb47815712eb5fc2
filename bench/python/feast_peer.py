"""The feature benchmark's Feast peer: Feast's Python SDK with its Redis online store over the
same data (Parquet files features-bench writes: the users' first 100 features as served after
both days, every post feature), in a Feast repo under --work.

Steps: `FeatureStore.apply` of the entities and views; `materialize` (Feast's own sync from
its file offline store into Redis, timed); then `get_online_features` in one Python thread,
closed loop: one user × 100 features for --seconds, and --feed-requests requests of
--feed-posts posts. Prints one JSON line.
"""

import argparse
import json
import os
import random
import time
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq


def quantiles(lat, secs, ok, errors, **extra):
    lat.sort()

    def q(p):
        if not lat:
            return None
        return lat[min(len(lat) - 1, round((len(lat) - 1) * p))] * 1000.0

    out = {
        "target_rate": 0,
        "requests": len(lat),
        "ok": ok,
        "errors": errors,
        "secs": secs,
        "throughput": ok / secs if secs > 0 else None,
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": q(1.0),
    }
    out.update(extra)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--users-parquet", required=True)
    p.add_argument("--posts-parquet", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--feed-posts", type=int, default=1200)
    p.add_argument("--feed-requests", type=int, default=100)
    a = p.parse_args()

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    os.makedirs(a.work, exist_ok=True)
    with open(os.path.join(a.work, "feature_store.yaml"), "w") as f:
        f.write(
            "project: bench\n"
            f"registry: {os.path.join(a.work, 'registry.db')}\n"
            "provider: local\n"
            "online_store:\n"
            "  type: redis\n"
            f"  connection_string: \"127.0.0.1:{a.port}\"\n"
            "offline_store:\n"
            "  type: file\n"
            "entity_key_serialization_version: 3\n"
        )

    def fields(path, key):
        schema = pq.read_schema(path)
        out = []
        for fld in schema:
            if fld.name in (key, "event_timestamp"):
                continue
            t = str(fld.type)
            dtype = Float64 if t == "double" else String if t in ("string", "large_string") else Int64
            out.append(Field(name=fld.name, dtype=dtype))
        return out

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    post = Entity(name="post", join_keys=["post_id"], value_type=ValueType.INT64)
    user_fields = fields(a.users_parquet, "user_id")
    post_fields = fields(a.posts_parquet, "post_id")
    user_fv = FeatureView(
        name="user_features", entities=[user], ttl=timedelta(days=3), schema=user_fields,
        source=FileSource(path=a.users_parquet, timestamp_field="event_timestamp"), online=True)
    post_fv = FeatureView(
        name="post_features", entities=[post], ttl=timedelta(days=3), schema=post_fields,
        source=FileSource(path=a.posts_parquet, timestamp_field="event_timestamp"), online=True)
    store = FeatureStore(repo_path=a.work)
    store.apply([user, post, user_fv, post_fv])

    users = pq.read_table(a.users_parquet, columns=["user_id"]).column(0).to_pylist()
    posts = pq.read_table(a.posts_parquet, columns=["post_id"]).column(0).to_pylist()
    out = {}
    now = datetime.now(timezone.utc)
    t = time.perf_counter()
    store.materialize(start_date=now - timedelta(days=4), end_date=now + timedelta(days=2))
    secs = time.perf_counter() - t
    out["materialize"] = {
        "users": len(users), "posts": len(posts), "secs": secs,
        "rows_per_sec": (len(users) + len(posts)) / secs,
    }
    print(f"feast: materialized {len(users)} users and {len(posts)} posts in {secs:.1f} s",
          file=__import__("sys").stderr)

    user_refs = [f"user_features:{f.name}" for f in user_fields]
    post_refs = [f"post_features:{f.name}" for f in post_fields]
    rnd = random.Random(1)

    def run(refs, make_rows, seconds, max_requests, expect):
        lat, ok, errors = [], 0, 0
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds and i < max_requests:
            rows = make_rows()
            t0 = time.perf_counter()
            try:
                d = store.get_online_features(features=refs, entity_rows=rows).to_dict()
                good = all(v is not None for k, vs in d.items() for v in vs) and \
                    len(next(iter(d.values()))) == len(rows) and len(d) >= expect
                ok += 1 if good else 0
                errors += 0 if good else 1
            except Exception:  # noqa: BLE001 - counted
                errors += 1
            lat.append(time.perf_counter() - t0)
            i += 1
        return quantiles(lat, time.perf_counter() - start, ok, errors)

    one_user = lambda: [{"user_id": users[rnd.randrange(len(users))]}]  # noqa: E731
    run(user_refs, one_user, 2, 10**9, len(user_refs))  # warm-up
    out["feast: user, 100 features, one thread"] = run(
        user_refs, one_user, a.seconds, 10**9, len(user_refs))
    feed = lambda: [{"post_id": pid} for pid in rnd.sample(posts, min(a.feed_posts, len(posts)))]  # noqa: E731
    out[f"feast: {a.feed_posts} posts, one thread"] = run(
        post_refs, feed, 600, a.feed_requests, len(post_refs))
    import feast
    out["note"] = (
        f"Feast {feast.__version__} Python SDK (FeatureStore.get_online_features, in process, "
        "one thread, closed loop) with its Redis online store on the same redis-server; "
        "latency is the call's own time.")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
