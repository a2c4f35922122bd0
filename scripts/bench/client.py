#!/usr/bin/env python3
"""The benchmark's HTTP client (standard library only): seeds entries in parallel, times full
passes of a paged query, times sequential requests, and times a Lambda cold start against a tiny
local Runtime API. scripts/bench.sh runs it inside the loopback-only namespace; every address it
talks to is 127.0.0.1.

  client.py seed URL N           create N entries (100 of them tagged "gpu"), 8 connections
  client.py check URL BODY N     one query, all pages: exit 1 unless exactly N entries match
  client.py passes URL BODY K    K full passes of a paged query (all pages): median ms per pass
  client.py latency URL BODY K   K sequential single requests: median ms
  client.py lambda-init BIN K [NAME=VALUE...]
                                 K cold starts of BIN as a Lambda function (with these extra
                                 variables): median and minimum ms to its first
                                 GET /2018-06-01/runtime/invocation/next
"""

import http.client
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

# Exactly this many entries carry the tag the benchmark queries, whatever the listing's size.
MATCHES = 100
SEED_CONNECTIONS = 8


def entry(i, n):
    """Entry number i (1-based) of a listing of n: shaped like the seed's example entry. One in
    n/100 carries "gpu" (spread evenly over the key range); metadata.owner takes 200 values, so
    {"container_registry_metadata.owner": "team-7"} matches n/200 entries and no tag index helps."""
    tags = ["cpu", f"zone-{i % 16}", "fast-pull"]
    if i % max(n // MATCHES, 1) == 0:
        tags.insert(0, "gpu")
    return {
        "container_registry_id": f"e{i:06d}",
        "container_registry_name": f"registry-{i}",
        "container_registry_metadata": {
            "environment": "production" if i % 3 else "staging",
            "owner": f"team-{i % 200}",
            "region": f"region-{i % 9}",
        },
        "container_registry_tags": tags,
        "container_registry_public_url": f"http://10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:5000",
        "container_registry_config": {
            "auth_required": i % 2 == 0,
            "mirror_enabled": False,
            "storage_backend": "s3",
            "max_layer_size_mb": 500,
        },
        "container_registry_storage_info": {
            "storage_type": "s3",
            "storage_size": -1,
            "memory_size": 8192,
            "registry_type": "aios",
        },
    }


def connect(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def request(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def seed(base, n):
    n = int(n)
    errors = []

    def worker(k):
        conn = connect(base)
        for i in range(1 + k, n + 1, SEED_CONNECTIONS):
            status, body = request(conn, "POST", "/container_registry", json.dumps(entry(i, n)))
            if status != 201:
                errors.append(f"entry {i}: HTTP {status} {body[:200]!r}")
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(SEED_CONNECTIONS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("seeding failed: " + errors[0])
    print(f"seeded {n} entries in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def full_pass(conn, path, body):
    """Follows next_cursor until it is null; returns the entries seen (the earlier service
    answers with one unpaged list and no cursor)."""
    seen, cursor, pages = 0, None, 0
    while True:
        sep = "&" if "?" in path else "?"
        url = path if cursor is None else f"{path}{sep}cursor={urllib.parse.quote(cursor)}"
        status, raw = request(conn, "POST", url, body)
        if status != 200:
            sys.exit(f"POST {url}: HTTP {status} {raw[:200]!r}")
        answer = json.loads(raw)
        seen += len(answer["data"])
        pages += 1
        cursor = answer.get("next_cursor")
        if cursor is None:
            return seen, pages


def split(url):
    u = urllib.parse.urlsplit(url)
    return f"{u.scheme}://{u.netloc}", u.path + (f"?{u.query}" if u.query else "")


def check(url, body, expected):
    base, path = split(url)
    seen, pages = full_pass(connect(base), path, body)
    if seen != int(expected):
        sys.exit(f"{body} at {url}: {seen} entries in {pages} pages, expected {expected}")


def passes(url, body, k):
    base, path = split(url)
    conn = connect(base)
    full_pass(conn, path, body)  # warm-up
    times = []
    for _ in range(int(k)):
        start = time.perf_counter()
        full_pass(conn, path, body)
        times.append((time.perf_counter() - start) * 1000)
    print(f"{statistics.median(times):.1f}")


def latency(url, body, k):
    base, path = split(url)
    conn = connect(base)
    for _ in range(3):  # warm-up
        request(conn, "POST", path, body)
    times = []
    for _ in range(int(k)):
        start = time.perf_counter()
        status, raw = request(conn, "POST", path, body)
        times.append((time.perf_counter() - start) * 1000)
        if status != 200:
            sys.exit(f"POST {url}: HTTP {status} {raw[:200]!r}")
    print(f"{statistics.median(times):.2f}")


def lambda_init(binary, k, *extra):
    """Starts BIN as Lambda starts a function (the variables Lambda sets, nothing else, no HOME)
    against a Runtime API on loopback that notes when the first `next` arrives and never answers
    it; then kills the process. Init is everything the function does before asking for work."""
    arrived = threading.Event()
    stamp = {}

    class RuntimeApi(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/2018-06-01/runtime/invocation/next":
                stamp.setdefault("t", time.perf_counter())
                arrived.set()
                time.sleep(5)  # hold it: the function waits here, as between invocations
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "registry-db",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/registry-db",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDBENCHMARK",
        "AWS_SECRET_ACCESS_KEY": "benchmark-secret",
        "AWS_SESSION_TOKEN": "benchmark-token",
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "_HANDLER": "bootstrap",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        # As template.yaml sets them:
        "TABLE_NAME": "container-registries",
        "REGISTRY_DB_STORE": "dynamodb",
        "REGISTRY_DB_PROBE_TIMEOUT_MS": "5000",
        "RUST_LOG": "info",
    }
    env.update(kv.split("=", 1) for kv in extra)  # NAME=VALUE arguments, for experiments
    times = []
    for _ in range(int(k)):
        arrived.clear()
        stamp.clear()
        start = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ok = arrived.wait(10)
        proc.kill()
        _, err = proc.communicate()
        if not ok:
            sys.exit(f"{binary} never asked for an event; stderr: {err.decode()[-500:]}")
        times.append((stamp["t"] - start) * 1000)
    server.shutdown()
    print(f"{statistics.median(times):.1f} {min(times):.1f}")


if __name__ == "__main__":
    commands = {
        "seed": seed,
        "check": check,
        "passes": passes,
        "latency": latency,
        "lambda-init": lambda_init,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
