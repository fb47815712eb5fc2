"""Peers of the ANN benchmark: faiss-cpu (IndexHNSWFlat) and usearch on the same vectors and
queries as ann-bench, with the same m, ef_construction and ef. Reads the files ann-bench
writes to --dir (little-endian): vectors.f32 (n x dim), queries.f32 (nq x dim), truth{0,1,2}.u32
(nq x kmax exact ids per filter, u32::MAX padding), exclude.u32 (nq x 500 excluded ids).
Filters: 0 none; 1 exclude + i % 10 == 3; 2 exclude + i % 1000 == 7. Prints one JSON object.
Searches run on one thread, one query at a time; builds on --threads."""

import argparse
import json
import sys
import time

import numpy as np

PAD = np.uint32(0xFFFFFFFF)
FILTERS = ["none", "exclude 500 + bucket (10%)", "exclude 500 + shard (0.1%)"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def recall(got, truth_row, k):
    truth = truth_row[:k]
    truth = truth[truth != PAD]
    if len(truth) == 0:
        return 1.0
    return len(np.intersect1d(np.asarray(got[:k], dtype=np.int64), truth.astype(np.int64))) / len(truth)


def summary(name, k, ef, lat, cpu, rec):
    lat = np.sort(np.asarray(lat)) * 1e3
    cpu = np.sort(np.asarray(cpu)) * 1e3
    idx = lambda p: min(len(lat) - 1, max(0, int(np.ceil(len(lat) * p)) - 1))
    return {"filter": name, "k": k, "ef": ef, "recall": float(np.mean(rec)),
            "p50_ms": float(lat[idx(0.5)]), "p99_ms": float(lat[idx(0.99)]),
            "p99_cpu_ms": float(cpu[idx(0.99)])}


def masks(n, excl_row):
    ids = np.arange(n)
    base = [None, ids % 10 == 3, ids % 1000 == 7]
    ex = excl_row[excl_row != PAD].astype(np.int64)
    out = [None]
    for b in base[1:]:
        m = b.copy()
        m[ex] = False
        out.append(m)
    return out


def run_faiss(a, vectors, queries, truths, excl, ks, efs):
    import faiss
    n, dim = vectors.shape
    faiss.omp_set_num_threads(a.threads)
    index = faiss.IndexHNSWFlat(dim, a.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = a.ef_construction
    t = time.perf_counter()
    index.add(vectors)
    build_s = time.perf_counter() - t
    log(f"faiss built in {build_s:.1f} s")
    faiss.omp_set_num_threads(1)
    runs = []
    for fi, name in enumerate(FILTERS):
        for k, ef in zip(ks, efs):
            lat, cpu, rec = [], [], []
            for q in range(len(queries)):
                params = faiss.SearchParametersHNSW()
                params.efSearch = ef
                keep = None
                if fi > 0:
                    mask = masks(n, excl[q])[fi]
                    keep = np.packbits(mask, bitorder="little")
                    params.sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(keep))
                x = queries[q:q + 1]
                t, c = time.perf_counter(), time.thread_time()
                _, labels = index.search(x, k, params=params)
                lat.append(time.perf_counter() - t)
                cpu.append(time.thread_time() - c)
                got = labels[0][labels[0] >= 0]
                rec.append(recall(got, truths[fi][q], k))
                del keep
            r = summary(name, k, ef, lat, cpu, rec)
            log(f"faiss {r}")
            runs.append(r)
    return {"version": faiss.__version__, "build_s": build_s, "runs": runs}


def run_usearch(a, vectors, queries, truths, ks, efs):
    import usearch
    from usearch.index import Index
    n, dim = vectors.shape
    index = Index(ndim=dim, metric="ip", dtype="f32", connectivity=a.m,
                  expansion_add=a.ef_construction)
    t = time.perf_counter()
    index.add(np.arange(n, dtype=np.uint64), vectors, threads=a.threads)
    build_s = time.perf_counter() - t
    log(f"usearch built in {build_s:.1f} s")
    runs = []
    for k, ef in zip(ks, efs):
        index.expansion_search = ef
        lat, cpu, rec = [], [], []
        for q in range(len(queries)):
            x = queries[q]
            t, c = time.perf_counter(), time.thread_time()
            m = index.search(x, k, threads=1)
            lat.append(time.perf_counter() - t)
            cpu.append(time.thread_time() - c)
            rec.append(recall(np.asarray(m.keys), truths[0][q], k))
        r = summary(FILTERS[0], k, ef, lat, cpu, rec)
        log(f"usearch {r}")
        runs.append(r)
    return {"version": usearch.__version__, "build_s": build_s, "runs": runs}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--k", default="10,100,1000")
    p.add_argument("--ef", default="64,128,1500")
    a = p.parse_args()
    ks = [int(x) for x in a.k.split(",")]
    efs = [int(x) for x in a.ef.split(",")]
    kmax = max(ks)
    vectors = np.fromfile(f"{a.dir}/vectors.f32", dtype="<f4").reshape(-1, a.dim)
    queries = np.fromfile(f"{a.dir}/queries.f32", dtype="<f4").reshape(-1, a.dim)
    truths = [np.fromfile(f"{a.dir}/truth{i}.u32", dtype="<u4").reshape(-1, kmax) for i in range(3)]
    excl = np.fromfile(f"{a.dir}/exclude.u32", dtype="<u4").reshape(-1, 500)
    out = {}
    for name, run in [("faiss", lambda: run_faiss(a, vectors, queries, truths, excl, ks, efs)),
                      ("usearch", lambda: run_usearch(a, vectors, queries, truths, ks, efs))]:
        try:
            out[name] = run()
        except Exception as e:  # a peer that fails is reported, the other still runs
            out[name] = {"skipped": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
