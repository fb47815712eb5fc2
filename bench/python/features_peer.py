"""The feature benchmark's Redis peer: the same lookups as Strata's feature server, straight
against redis-server with redis-py (asyncio client, one connection per concurrent task).

The hashes are written by features-bench before this runs: `peer:u:<id>` holds a user's 100
features, `peer:p:<id>` a post's features. Runs, like the Rust load generator:
- user lookups (`HGETALL peer:u:<id>`), open loop at --rate for --seconds over --concurrency
  connections, latency counted from each request's due time;
- the same flat out (closed loop) for 10 s;
- --feed-requests pipelines of --feed-posts `HGETALL peer:p:<id>`, one connection.
Prints one JSON line.
"""

import argparse
import asyncio
import json
import time

import redis.asyncio as aioredis


def mix(x):
    """SplitMix64, as bench/src/features/data.rs::mix."""
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def quantiles(lat, rate, secs, ok, errors):
    lat.sort()

    def q(p):
        if not lat:
            return None
        return lat[min(len(lat) - 1, round((len(lat) - 1) * p))] * 1000.0

    return {
        "target_rate": rate,
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


async def load(pool, make_call, rate, seconds, concurrency, max_requests=None):
    counter = iter(range(1 << 62))
    start = time.perf_counter() + 0.02
    end = start + seconds
    lat = []
    state = {"ok": 0, "errors": 0}

    async def worker():
        client = aioredis.Redis(connection_pool=pool)
        while True:
            i = next(counter)
            if max_requests is not None and i >= max_requests:
                return
            due = start + i / rate if rate > 0 else max(time.perf_counter(), start)
            if due >= end:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                good = await make_call(client, i)
                state["ok" if good else "errors"] += 1
            except Exception:  # noqa: BLE001 - counted, the run goes on
                state["errors"] += 1
            lat.append(time.perf_counter() - due)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    secs = time.perf_counter() - start
    return quantiles(lat, rate, secs, state["ok"], state["errors"])


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--posts", type=int, required=True)
    p.add_argument("--features", type=int, default=100)
    p.add_argument("--rate", default="5000,2000", help="comma-separated rates, one run each")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--feed-posts", type=int, default=1200)
    p.add_argument("--feed-requests", type=int, default=500)
    a = p.parse_args()

    pool = aioredis.ConnectionPool(host="127.0.0.1", port=a.port, max_connections=a.concurrency)

    async def user(client, i):
        uid = mix(i ^ 0xB0D1) % a.users + 1
        h = await client.hgetall(f"peer:u:{uid}")
        return len(h) == a.features

    def feed_ids(request):
        ids = sorted({mix(((request * 1_000_003) & ((1 << 64) - 1)) ^ k ^ 0xFEED) % a.posts + 1
                      for k in range(a.feed_posts)})
        return ids

    async def feed(client, i):
        ids = feed_ids(i + 1)
        pipe = client.pipeline(transaction=False)
        for pid in ids:
            pipe.hgetall(f"peer:p:{pid}")
        rows = await pipe.execute()
        return all(len(r) > 0 for r in rows)

    out = {}
    rates = [float(r) for r in a.rate.split(",") if r]
    await load(pool, user, rates[0], 3, a.concurrency)  # warm-up
    for rate in rates:
        out[f"redis-py: user, 100 features, {rate:g}/s"] = await load(
            pool, user, rate, a.seconds, a.concurrency)
    out["redis-py: user, 100 features, flat out"] = await load(
        pool, user, 0, 10, a.concurrency)
    feed_pool = aioredis.ConnectionPool(host="127.0.0.1", port=a.port, max_connections=1)
    out[f"redis-py: {a.feed_posts} posts pipelined, one connection"] = await load(
        feed_pool, feed, 0, 600, 1, max_requests=a.feed_requests)
    out["note"] = (
        "redis-py (asyncio) in one Python process: HGETALL of a hash holding the user's 100 "
        "features; the feed is one pipeline of HGETALLs. Latency from each request's due time, "
        "as the Rust load generator counts it.")
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
