"""What a Python call of `twotower.Index.search` costs over the Rust search it wraps.

Builds a tiny index (default 1,000 vectors of dimension 32, exact and approximate),
times single queries one at a time from Python, and the same queries through
`twotower index bench --single-queries` (the Rust loop, no Python), alternating the two
REPEATS times; prints the medians and the difference per query. ScaNN's Python call
costs 4–7 µs over its C++ search on this machine (ANCHORS.md).

    pip install ./python && cargo build --release
    python bench/python_search_overhead.py [--rows 1000] [--dim 32] [--repeats 7]
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import twotower

REPO = Path(__file__).resolve().parents[1]


def python_us_per_query(index, queries, k):
    search = index.search
    start = time.perf_counter()
    for q in queries:
        search(q, k)
    return (time.perf_counter() - start) / len(queries) * 1e6


def rust_us_per_query(binary, folder, qfile, tfile, k, n):
    out = subprocess.run(
        [binary, "--threads", "1", "index", "bench", "--index", folder, "--queries", qfile,
         "--truth", tfile, "-k", str(k), "--single-queries", str(n), "--repeats", "1", "--json"],
        capture_output=True, text=True, check=True,
    )
    return 1e6 / json.loads(out.stdout)["single_thread_qps"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--queries", type=int, default=5000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--bin", default=os.environ.get("TWOTOWER_BIN", str(REPO / "target/release/twotower")))
    a = p.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((a.rows, a.dim)).astype(np.float32)
    queries = rng.standard_normal((a.queries, a.dim)).astype(np.float32)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, : a.k].astype(np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        qfile, tfile = f"{tmp}/q.npy", f"{tmp}/gt.npy"
        np.save(qfile, queries)
        np.save(tfile, truth)
        for kind in ("exact", "ann"):
            index = twotower.Index.build(vectors, kind=kind)
            folder = f"{tmp}/{kind}"
            index.save(folder)
            py, rs = [], []
            python_us_per_query(index, queries[:500], a.k)  # warm up
            for _ in range(a.repeats):
                py.append(python_us_per_query(index, queries, a.k))
                rs.append(rust_us_per_query(a.bin, folder, qfile, tfile, a.k, a.queries))
            mp, mr = statistics.median(py), statistics.median(rs)
            print(
                f"{kind:5} index of {a.rows}×{a.dim}, k={a.k}: Python {mp:.2f} µs/query, "
                f"Rust {mr:.2f} µs/query, overhead {mp - mr:.2f} µs (medians of {a.repeats}, "
                f"{a.queries} queries each)"
            )


if __name__ == "__main__":
    main()
