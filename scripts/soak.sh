#!/usr/bin/env bash
# The soak behind the README's "Soak" figures (issue 18): a release `registry-db serve` on the
# embedded store under a mixed read/write/check workload for 10 minutes, with slow clients beside
# it (half-sent heads, stalled bodies, idle sockets), printing throughput, errors and the server's
# RSS every 30 s and a summary at the end. Not a test: scripts/test.sh never runs it.
#
#   ./scripts/soak.sh                  # 10 minutes, as root (it enters a loopback-only namespace)
#   ./scripts/soak.sh --minutes 2      # shorter
#
# Settings (environment): WORKERS (client threads, default 6), SLOW (slow sockets held, 300),
# ENTRIES (entries kept in the store, 2000), SKIP_BUILD=1 to use the release binary as it is. Everything listens on and talks to 127.0.0.1 only;
# the entries' URLs name a small registry stub on loopback, which the checks probe.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --minutes=*) minutes="${1#*=}"; shift ;;
    *) echo "usage: $0 [--minutes N]" >&2; exit 2 ;;
  esac
done

bin="${CARGO_TARGET_DIR:-target}/release/registry-db"
if [ -z "${REGISTRY_DB_SOAK_IN_NETNS:-}" ]; then
  if [ -z "${SKIP_BUILD:-}" ]; then
    printf '==> release build\n' >&2
    cargo build --release --bin registry-db >&2
  fi
  # Only loopback inside: whatever an entry names, nothing leaves the machine.
  exec env REGISTRY_DB_SOAK_IN_NETNS=1 unshare -n bash -c \
    'ip link set lo up && exec "$0" --minutes "$1"' "$0" "$minutes"
fi

data=$(mktemp -d)
log="$data/server.log"
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin" serve --addr 127.0.0.1:0 --data "$data/store" --writes open --probe-allow-loopback \
  --probe-cooldown-secs 1 >"$data/stdout" 2>"$log" &
server=$!
for _ in $(seq 100); do grep -q 'listening on' "$data/stdout" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^registry-db listening on //p' "$data/stdout")
[ -n "$base" ] || { echo "the server did not start:" >&2; cat "$log" >&2; exit 1; }
printf '==> %s (pid %s) for %s minutes\n' "$base" "$server" "$minutes" >&2

python3 - "$base" "$server" "$minutes" <<'PY'
import http.client, json, os, random, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

base, pid, minutes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
host, port = base.removeprefix("http://").split(":")
port = int(port)
WORKERS = int(os.environ.get("WORKERS", "6"))
SLOW = int(os.environ.get("SLOW", "300"))
ENTRIES = int(os.environ.get("ENTRIES", "2000"))
end = time.time() + minutes * 60

class Registry(BaseHTTPRequestHandler):
    """What a probe of an entry reaches: an OCI registry's /v2/ answer."""
    def do_GET(self):
        self.send_response(200)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass

registry = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
threading.Thread(target=registry.serve_forever, daemon=True).start()
registry_url = f"http://127.0.0.1:{registry.server_address[1]}"

lock = threading.Lock()
counts = {}   # kind -> [ok, errors, seconds]
errors = {}   # what went wrong -> count
ids = []      # entries believed to exist
next_id = [0]

def count(kind, ok, seconds, what=None):
    with lock:
        c = counts.setdefault(kind, [0, 0, 0.0])
        c[0 if ok else 1] += 1
        c[2] += seconds
        if not ok:
            errors[what] = errors.get(what, 0) + 1

def call(conn, kind, method, path, body=None, expect=(200,)):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    t = time.time()
    try:
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        payload = r.read()
        ok = r.status in expect
        count(kind, ok, time.time() - t, f"{kind} {r.status}")
        return r.status, payload
    except Exception as e:  # a connection the server closed: counted, reopened
        count(kind, False, time.time() - t, f"{kind} {type(e).__name__}")
        conn.close()
        return None, b""

def entry(i):
    tags = random.sample([f"t{j}" for j in range(200)], 8) + ["soak"]
    return {
        "container_registry_id": f"soak-{i}",
        "container_registry_name": f"soak registry {i}",
        "container_registry_public_url": registry_url,
        "container_registry_tags": tags,
        "container_registry_metadata": {"n": i, "words": "x" * random.randint(10, 4000)},
        "container_registry_storage_info": {"registry_type": "external", "storage_type": "s3"},
    }

def worker(n):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    rnd = random.Random(n)
    while time.time() < end:
        roll = rnd.random()
        with lock:
            pick = rnd.choice(ids) if ids else None
        if roll < 0.30 and pick:
            call(conn, "get", "GET", f"/container_registry/{pick}", expect=(200, 404))
        elif roll < 0.45:
            call(conn, "query", "POST", "/container_registries?limit=50",
                 {"container_registry_tags": {"$all": [f"t{rnd.randrange(200)}", "soak"]}})
        elif roll < 0.52:
            call(conn, "query", "POST", "/container_registries?limit=20",
                 {"container_registry_metadata.n": {"$gt": rnd.randrange(ENTRIES * 4)}})
        elif roll < 0.57:
            call(conn, "page", "GET", f"/?tag=t{rnd.randrange(200)}")
        elif roll < 0.60:
            call(conn, "facets", "POST", "/container_registries/facets", {"container_registry_tags": "soak"})
        elif roll < 0.75:
            with lock:
                i = next_id[0]
                next_id[0] += 1
            status, _ = call(conn, "create", "POST", "/container_registry", entry(i), expect=(201,))
            if status == 201:
                with lock:
                    ids.append(f"soak-{i}")
                    victim = ids.pop(rnd.randrange(len(ids))) if len(ids) > ENTRIES else None
                if victim:
                    call(conn, "delete", "DELETE", f"/container_registry/{victim}", expect=(200, 404))
        elif roll < 0.88 and pick:
            call(conn, "update", "PUT", f"/container_registry/{pick}",
                 {"$set": {"container_registry_name": f"renamed {rnd.random()}"}}, expect=(200, 404))
        elif roll < 0.95 and pick:
            call(conn, "check", "GET", f"/check_container_health/{pick}", expect=(200, 404, 429))
        else:
            call(conn, "healthz", "GET", "/healthz")

slow_open = [0]
def slow_client(n):
    """Sockets that send half a head, or a head and a stalled body, or nothing, and hold on until
    the server cuts them; then open again."""
    rnd = random.Random(1000 + n)
    while time.time() < end:
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((host, port))
            with lock:
                slow_open[0] += 1
            kind = n % 3
            if kind == 0:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            elif kind == 1:
                s.sendall(b"POST /container_registry HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 200000\r\n\r\n{\"container_registry_id\":")
            s.settimeout(None if kind else 90)
            while time.time() < end:
                s.settimeout(max(0.1, min(10, end - time.time())))
                try:
                    if not s.recv(65536):
                        break
                except socket.timeout:
                    if kind == 0:
                        s.sendall(b"a")  # trickle the head
        except OSError:
            pass
        finally:
            s.close()
            with lock:
                slow_open[0] -= 1
        time.sleep(rnd.random())

def rss():
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                fields[k] = int(v.split()[0])
    return fields

def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))

# A store to start from.
conn = http.client.HTTPConnection(host, port, timeout=60)
for _ in range(ENTRIES // 2):
    i = next_id[0]
    next_id[0] += 1
    if call(conn, "create", "POST", "/container_registry", entry(i), expect=(201,))[0] == 201:
        ids.append(f"soak-{i}")
conn.close()

threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(WORKERS)]
threads += [threading.Thread(target=slow_client, args=(n,), daemon=True) for n in range(SLOW)]
for t in threads:
    t.start()

start = time.time()
last = {k: list(v) for k, v in counts.items()}
last_at = time.time()
rows = []
print(f"{'time':>6} {'req/s':>7} {'errors':>6} {'RSS MiB':>8} {'peak':>6} {'fds':>5} {'slow':>5} {'entries':>7}  per kind (req/s, mean ms)")
while time.time() < end:
    time.sleep(max(0, min(30, end - time.time())))
    with lock:
        now = {k: list(v) for k, v in counts.items()}
        held = slow_open[0]
        held_ids = len(ids)
    dt = max(0.001, time.time() - last_at)
    last_at = time.time()
    done = sum(v[0] + v[1] for v in now.values()) - sum(v[0] + v[1] for v in last.values())
    errs = sum(v[1] for v in now.values()) - sum(v[1] for v in last.values())
    kinds = []
    for k in sorted(now):
        a = now[k]
        b = last.get(k, [0, 0, 0.0])
        n = a[0] + a[1] - b[0] - b[1]
        if n:
            kinds.append(f"{k} {n / dt:.0f}/{(a[2] - b[2]) / n * 1000:.1f}")
    m = rss()
    elapsed = time.time() - start
    rows.append((elapsed, done / dt, errs, m["VmRSS"] / 1024))
    print(f"{elapsed:6.0f} {done / dt:7.0f} {errs:6d} {m['VmRSS'] / 1024:8.1f} {m['VmHWM'] / 1024:6.1f} {fds():5d} {held:5d} {held_ids:7d}  {', '.join(kinds)}", flush=True)
    last = now

total = sum(v[0] + v[1] for v in counts.values())
bad = sum(v[1] for v in counts.values())
print(f"\n{total} requests in {time.time() - start:.0f} s ({total / (time.time() - start):.0f}/s), {bad} errors")
for what, n in sorted(errors.items(), key=lambda kv: -kv[1]):
    print(f"  {n:7d}  {what}")
if len(rows) >= 3:
    warm = rows[1:]
    print(f"RSS after warm-up (from {warm[0][0]:.0f} s): min {min(r[3] for r in warm):.1f} MiB, "
          f"max {max(r[3] for r in warm):.1f} MiB, last {rows[-1][3]:.1f} MiB; peak {rss()['VmHWM'] / 1024:.1f} MiB")
PY
