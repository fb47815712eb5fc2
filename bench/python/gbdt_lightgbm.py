"""LightGBM peer of `gbdt-bench`: trains on the same Parquet data, split and features.

    python gbdt_lightgbm.py --data PATH --label label --exclude a,b --valid-from 2026-12-05 \
        --threads 2 --trees 100 --num-leaves 31 --learning-rate 0.1 --min-data-in-leaf 20 \
        --max-bin 255 --predictions OUT.f32
prints one JSON object (timings, sizes) and writes the validation predictions as little-endian
f32 to OUT.f32, so the Rust side computes AUC and log loss with the same code for both.

    python gbdt_lightgbm.py --make-synthetic OUT.parquet --rows 500000
writes a synthetic CTR-like sample file (dt 2026-12-01..05, label, numeric features with missing
values, one string category) for runs without a real export.
"""
import argparse
import datetime
import glob
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def read_table(path):
    files = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True)) if os.path.isdir(path) else [path]
    return pa.concat_tables([pq.read_table(f) for f in files])


def columns(table, label, exclude):
    feats, cats = [], []
    for field in table.schema:
        if field.name == label or field.name in exclude:
            continue
        feats.append(field.name)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type) or pa.types.is_dictionary(field.type):
            cats.append(field.name)
    return feats, cats


def matrix(table, feats, cats, dictionaries):
    out = np.empty((table.num_rows, len(feats)), dtype=np.float64)
    for j, name in enumerate(feats):
        col = table.column(name)
        if name in cats:
            d = dictionaries.setdefault(name, {})
            vals = col.to_pylist()
            out[:, j] = [np.nan if v is None else d.setdefault(v, len(d)) for v in vals]
        else:
            arr = pc.cast(col, pa.float64())
            out[:, j] = arr.to_numpy(zero_copy_only=False)
    return out


def bench(a):
    import lightgbm as lgb

    table = read_table(a.data)
    exclude = set(x for x in a.exclude.split(",") if x)
    feats, cats = columns(table, a.label, exclude)
    dt = table.column("dt")
    if pa.types.is_date(dt.type):
        valid_from = pa.scalar(datetime.date.fromisoformat(a.valid_from), type=dt.type)
    else:
        valid_from = pa.scalar(a.valid_from)
    is_valid = pc.greater_equal(dt, valid_from).to_numpy(zero_copy_only=False)
    dicts = {}
    x = matrix(table, feats, cats, dicts)
    y = pc.cast(table.column(a.label), pa.float64()).to_numpy(zero_copy_only=False)
    xt, yt, xv, yv = x[~is_valid], y[~is_valid], x[is_valid], y[is_valid]
    del x, table
    params = {
        "objective": "binary",
        "num_leaves": a.num_leaves,
        "learning_rate": a.learning_rate,
        "min_data_in_leaf": a.min_data_in_leaf,
        "max_bin": a.max_bin,
        "num_threads": a.threads,
        "seed": 0,
        "verbose": -1,
        "metric": "binary_logloss",
    }
    t0 = time.perf_counter()
    cat_idx = [feats.index(c) for c in cats]
    dtrain = lgb.Dataset(xt, yt, feature_name=feats, categorical_feature=cat_idx, params=params, free_raw_data=True)
    dtrain.construct()
    dvalid = lgb.Dataset(xv, yv, reference=dtrain, feature_name=feats, categorical_feature=cat_idx).construct()
    t1 = time.perf_counter()
    booster = lgb.train(params, dtrain, num_boost_round=a.trees, valid_sets=[dvalid])
    t2 = time.perf_counter()
    pred = booster.predict(xv, num_threads=a.threads).astype("<f4")
    pred.tofile(a.predictions)
    sample = np.ascontiguousarray(xv[:1200])
    lat = []
    for _ in range(a.latency_reps):
        s = time.perf_counter()
        booster.predict(sample, num_threads=1)
        lat.append(time.perf_counter() - s)
    one = np.ascontiguousarray(xv[:1])
    single = []
    for _ in range(a.latency_reps):
        s = time.perf_counter()
        booster.predict(one, num_threads=1)
        single.append(time.perf_counter() - s)
    lat_ms = np.array(lat) * 1000
    single_us = np.array(single) * 1e6
    print(json.dumps({
        "lightgbm_version": lgb.__version__,
        "train_rows": int(len(yt)),
        "valid_rows": int(len(yv)),
        "features": feats,
        "categorical": cats,
        "construct_s": t1 - t0,
        "train_s": t2 - t1,
        "trees": booster.num_trees(),
        "predict_1200_p50_ms": float(np.percentile(lat_ms, 50)),
        "predict_1200_p99_ms": float(np.percentile(lat_ms, 99)),
        "predict_1200_min_ms": float(lat_ms.min()),
        "predict_1_p50_us": float(np.percentile(single_us, 50)),
    }))


def synthetic(a):
    rng = np.random.default_rng(7)
    n = a.rows
    day = rng.integers(0, 5, n)
    u_ctr = rng.beta(2, 8, n)
    p_ctr = rng.beta(2, 8, n)
    imps = rng.poisson(50, n).astype(np.float64)
    imps[rng.random(n) < 0.1] = np.nan
    age = rng.exponential(10, n)
    topic = rng.integers(0, 30, n)
    noise = rng.normal(size=n)
    z = -1.5 + 3 * (u_ctr - 0.2) + 4 * (p_ctr - 0.2) + 0.4 * np.sin(topic) - 0.05 * age + np.where(np.isnan(imps), 0.5, 0.0)
    label = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    dt = [datetime.date(2026, 12, 1) + datetime.timedelta(days=int(d)) for d in day]
    table = pa.table({
        "user_id": rng.integers(0, 10000, n),
        "label": label,
        "u_ctr_7d": u_ctr,
        "p_ctr_7d": p_ctr,
        "u_impressions_7d": imps,
        "p_age_days": age,
        "topic": pa.array([f"t{t}" for t in topic]),
        "noise": noise,
        "dt": pa.array(dt, type=pa.date32()),
    })
    # zstd: the codec the workspace's parquet crate is built with.
    pq.write_table(table, a.make_synthetic, row_group_size=100_000, compression="zstd")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data")
    p.add_argument("--label", default="label")
    p.add_argument("--exclude", default="")
    p.add_argument("--valid-from")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--num-leaves", type=int, default=31)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--min-data-in-leaf", type=int, default=20)
    p.add_argument("--max-bin", type=int, default=255)
    p.add_argument("--latency-reps", type=int, default=1000)
    p.add_argument("--predictions")
    p.add_argument("--make-synthetic")
    p.add_argument("--rows", type=int, default=500_000)
    a = p.parse_args()
    if a.make_synthetic:
        synthetic(a)
    else:
        bench(a)
