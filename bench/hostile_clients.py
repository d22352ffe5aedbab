#!/usr/bin/env python3
"""Hostile clients for bench/serve.sh (a benchmark helper, not a test).

    python3 bench/hostile_clients.py PORT SECONDS

For SECONDS, keeps 50 slow clients connected to 127.0.0.1:PORT (each sends a request
header one byte per second and reconnects when the server closes it) and 5 clients that
send over-budget requests (POST /v1/recommend for 1,000 users with k = 1,000) back to back.
Prints how often the server closed a slow client and the status codes of the over-budget
answers. Talks to loopback only; every loop ends at the deadline.
"""
import http.client
import json
import socket
import sys
import threading
import time
from collections import Counter

port, seconds = int(sys.argv[1]), float(sys.argv[2])
deadline = time.time() + seconds
closed = Counter()
answers = Counter()
lock = threading.Lock()


def slow():
    header = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 4096
    while time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            for b in header:
                if time.time() >= deadline:
                    break
                s.send(bytes([b]))
                time.sleep(1.0)
        except OSError:
            with lock:
                closed["closed by server"] += 1
            time.sleep(0.1)
        finally:
            try:
                s.close()
            except Exception:
                pass


def over_budget():
    body = json.dumps({"users": [str(u) for u in range(1, 1001)], "k": 1000})
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", "/v1/recommend", body, {"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            with lock:
                answers[r.status] += 1
            c.close()
        except OSError as e:
            with lock:
                answers[type(e).__name__] += 1


threads = [threading.Thread(target=slow) for _ in range(50)]
threads += [threading.Thread(target=over_budget) for _ in range(5)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"  hostile clients: slow clients closed by the server {closed['closed by server']} times; "
      f"over-budget answers {dict(answers)}")
