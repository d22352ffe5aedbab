#!/usr/bin/env python3
"""/healthz latency while heavy batches run (a benchmark helper, not a test).

    python3 bench/healthz_load.py PORT [SECONDS] [NICE]

For SECONDS (default 30), 6 clients (processes of their own, so that their reading does not
hold up the probe's interpreter) post budget-sized batches back to back to 127.0.0.1:PORT
(POST /v1/recommend, 1,000 users x k 20 = the 20,000-result limit) while one client asks
GET /healthz every 10 ms on a connection of its own. NICE (default 0) lowers the batch
clients' priority, as if they ran on other machines: on a 2-core host six busy clients
otherwise take the CPU from the server they measure. Prints the probe latency
p50 / p99 / max in milliseconds, and the status codes of the batches. Start the server first
(`twotower serve --model DIR --addr 127.0.0.1:PORT`) with a model whose users are 1..1000
(MovieLens 100K's ids). Talks to loopback only; every loop ends at the deadline.
"""
import http.client
import json
import multiprocessing
import os
import sys
import time
from collections import Counter

port = int(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
nice = int(sys.argv[3]) if len(sys.argv) > 3 else 0
deadline = time.time() + seconds
body = json.dumps({"users": [str(u) for u in range(1, 1001)], "k": 20})


def batches(out, nice):
    # The load generator stands for clients on other machines: with NICE it yields the
    # CPU to the server it measures.
    os.nice(nice)
    codes = Counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.time() < deadline:
        try:
            c.request("POST", "/v1/recommend", body, {"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            codes[r.status] += 1
        except OSError:
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.close()
    out.put(dict(codes))


results = multiprocessing.Queue()
workers = [multiprocessing.Process(target=batches, args=(results, nice)) for _ in range(6)]
for w in workers:
    w.start()
time.sleep(1.0)  # let the batches fill the pool
probe = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
lat = []
while time.time() < deadline:
    t = time.perf_counter()
    probe.request("GET", "/healthz")
    probe.getresponse().read()
    lat.append((time.perf_counter() - t) * 1e3)
    time.sleep(0.01)
codes = Counter()
for _ in workers:
    codes.update(results.get())
for w in workers:
    w.join()
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"healthz probes {len(lat)}: p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms, "
      f"max {lat[-1]:.2f} ms; batches {dict(codes)}")
