#!/usr/bin/env python3
"""The local gateway under load: trigger throughput against GET /health, in one run.

    cargo build --release -p gateway-local -p example-subscriber
    python3 bench/load.py [--duration 10] [--connections 16] [--skip-subscription]

Builds nothing itself: build the release `event-gateway` and `example-subscriber` first (the
command above). Needs `wrk` (Debian: `apt-get install wrk`) and, for the one-subscription
phase, `cargo-lambda` (in .venv after `make run` or `make test`).

Phases, each against the same release gateway on a fresh data folder, with `wrk -t2 -cN`:
  1. GET /health.
  2. POST /events/load.orders/trigger, no subscription: the 1 KiB order of the criterion
     bench (crates/core/benches/trigger.rs), valid against the same schema.
  3. the same with one async subscription to `example-subscriber` served by
     `cargo lambda watch`, the worker delivering while triggers arrive; then the time until
     every delivery is settled gives the worker's delivery rate.
The gateway logs how many triggers its commits held when it stops (SIGTERM); that gives
triggers per commit. On Linux it also prints the gateway's CPU time (from /proc/<pid>/stat) and
the bytes it had written to storage (/proc/<pid>/io, `write_bytes`) per request of each run: in
the one-subscription phase those include the worker's deliveries made meanwhile. The script prints one line per figure, and fails if wrk saw a response
other than 202 on a trigger or a socket error.
"""

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
GATEWAY = Path(os.environ.get("GATEWAY_BINARY", TARGET / "release" / "event-gateway"))

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["orderId", "customer", "items", "total", "currency", "status"],
    "properties": {
        "orderId": {"type": "string", "pattern": "^ord_[0-9a-z]{8,32}$"},
        "customer": {
            "type": "object",
            "required": ["id", "email"],
            "properties": {
                "id": {"type": "string", "maxLength": 64},
                "email": {"type": "string", "maxLength": 254, "pattern": "^[^@\\s]+@[^@\\s]+$"},
                "tier": {"enum": ["standard", "gold", "platinum"]},
            },
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["sku", "quantity", "unitPrice"],
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                    "quantity": {"type": "integer", "minimum": 1},
                    "unitPrice": {"type": "number", "minimum": 0},
                },
            },
        },
        "total": {"type": "number", "minimum": 0},
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "status": {"type": "string", "enum": ["created", "paid", "shipped"]},
        "priority": {"type": "integer", "minimum": 0, "maximum": 10},
        "gift": {"type": "boolean"},
        "tags": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 32}},
        "note": {"type": "string", "maxLength": 1000},
    },
}


def order_payload(size=1024):
    """The criterion bench's order, padded in `note` to exactly `size` bytes."""

    def build(note):
        return json.dumps(
            {
                "orderId": "ord_01hx7k2m9q",
                "customer": {"id": "cus_42", "email": "ada@example.com", "tier": "gold"},
                "items": [
                    {"sku": "ABC-1234", "quantity": 2, "unitPrice": 19.99},
                    {"sku": "XYZ-0001", "quantity": 1, "unitPrice": 5.5},
                    {"sku": "QRS-9876", "quantity": 3, "unitPrice": 12.0},
                ],
                "total": 81.48,
                "currency": "EUR",
                "status": "created",
                "priority": 3,
                "gift": False,
                "tags": ["web", "promo", "eu"],
                "note": note,
            },
            separators=(",", ":"),
        ).encode()

    pad = size - len(build(""))
    return build("n" * pad)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port} within {timeout} s")


def request(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read() or b"null")


def wrk(args, url, lua=None):
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if lua:
        cmd += ["-s", lua]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"99%\s+(\S+)", out).group(1)
    return {"rate": rate, "total": total, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(1) if errors else None, "p99": p99}


def lua_script(directory, path, payload):
    lua = directory / "trigger.lua"
    body = payload.decode().replace("\\", "\\\\").replace('"', '\\"')
    lua.write_text(
        'wrk.method = "POST"\n'
        f'wrk.path = "{path}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.body = "{body}"\n'
    )
    return str(lua)


class Gateway:
    def __init__(self, data_dir, lambda_port, log):
        self.port = free_port()
        self.log = log
        env = dict(os.environ,
                   GATEWAY_ADDR=f"127.0.0.1:{self.port}", GATEWAY_DATA_DIR=str(data_dir),
                   GATEWAY_FUNCTION_ALLOWLIST="example-", GATEWAY_ACCOUNT_ID="123456789012",
                   AWS_ENDPOINT_URL_LAMBDA=f"http://127.0.0.1:{lambda_port}", AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="load", AWS_SECRET_ACCESS_KEY="load", RUST_LOG="info")
        self.process = subprocess.Popen([str(GATEWAY)], env=env,
                                        stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, "the gateway")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        """SIGTERM, then the group-commit counts the gateway logs as it stops."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        # The log is text, with ANSI colours when the gateway's tracing has them.
        text = re.sub(r"\x1b\[[0-9;]*m", "", Path(self.log).read_text())
        for line in text.splitlines():
            if "triggers accepted" in line and "commits" in line:
                record = json.loads(line) if line.startswith("{") else None
                fields = record["fields"] if record else dict(re.findall(r"(\w+)=(\d+)", line))
                return int(fields["triggers"]), int(fields["commits"])
        return None, None  # a gateway from before group commit


def settled_count(db):
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM deliveries WHERE status != 'pending'").fetchone()[0]


def phase(args, work, lambda_port, subscribe):
    data_dir = work / ("one-subscription" if subscribe else "no-subscription")
    gateway = Gateway(data_dir, lambda_port, work / f"{data_dir.name}.log")
    try:
        request("POST", f"{gateway.url}/events", {"name": "load.orders", "schema": SCHEMA})
        if subscribe:
            request("POST", f"{gateway.url}/subscriptions",
                    {"event": "load.orders", "functionId": "example-subscriber"})
            # One trigger through first, so the worker's first invoke (watch starting the
            # function) is not part of the run.
            request("POST", f"{gateway.url}/events/load.orders/trigger", json.loads(order_payload()))
            wait(lambda: settled_count(data_dir / "gateway.db") == 1, "the warm-up delivery")
        health = measured(gateway, lambda: wrk(args, f"{gateway.url}/health"))
        trigger = measured(gateway, lambda: wrk(args, gateway.url,
                                                lua_script(work, "/events/load.orders/trigger", order_payload())))
        result = {"health": health, "trigger": trigger}
        if subscribe:
            started, expected = time.monotonic(), trigger["total"] + 1
            before = settled_count(data_dir / "gateway.db")
            wait(lambda: settled_count(data_dir / "gateway.db") >= expected, "every delivery", timeout=600)
            drained = time.monotonic() - started
            result["delivered_during"] = before - 1
            result["delivery_rate"] = (expected - 1) / (args.duration + drained)
            result["drain_seconds"] = drained
    finally:
        triggers, commits = gateway.stop()
    result["triggers"], result["commits"] = triggers, commits
    for name in ("health", "trigger"):
        r = result[name]
        if r["errors"] or (name == "trigger" and r["non2xx"]):
            sys.exit(f"{name}: {r['non2xx']} non-2xx responses, socket errors {r['errors']}")
    return result


def usage(pid):
    """The process's CPU seconds (user, system) and bytes written to storage so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields[11]) / tick, int(fields[12]) / tick, int(io["write_bytes"])


def measured(gateway, run):
    """wrk's figures, and the gateway's CPU and storage writes per request during the run."""
    if not Path("/proc/self/io").exists():
        return run()
    before = usage(gateway.process.pid)
    result = run()
    after = usage(gateway.process.pid)
    n = max(result["total"], 1)
    result["user_us"], result["system_us"] = ((a - b) * 1e6 / n for a, b in zip(after[:2], before[:2]))
    result["written_bytes"] = (after[2] - before[2]) / n
    return result


def wait(ready, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


def report(label, r):
    ratio = r["trigger"]["rate"] / r["health"]["rate"]
    print(f"{label}: GET /health {r['health']['rate']:,.0f}/s (p99 {r['health']['p99']}), "
          f"trigger {r['trigger']['rate']:,.0f}/s (p99 {r['trigger']['p99']}), ratio {ratio:.2f}; "
          + (f"{r['triggers']:,} triggers in {r['commits']:,} commits: "
             f"{r['triggers'] / max(r['commits'], 1):.1f} per commit" if r["commits"] else "no commit counts logged"))
    for name in ("health", "trigger"):
        m = r[name]
        if "user_us" in m:
            print(f"{label}: gateway per {name} request: {m['user_us'] + m['system_us']:.1f} us CPU "
                  f"({m['user_us']:.1f} user, {m['system_us']:.1f} system), "
                  f"{m['written_bytes']:,.0f} bytes written to storage")
    if "delivery_rate" in r:
        print(f"{label}: {r['trigger']['total']:,} deliveries, {r['delivered_during']:,} settled during the run, "
              f"all within {r['drain_seconds']:.1f} s after it: {r['delivery_rate']:,.0f} deliveries/s overall")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-subscription", action="store_true", help="only the no-subscription phase")
    args = parser.parse_args()
    for tool in ("wrk",):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            sys.exit(f"{tool} is not installed (Debian: apt-get install {tool})")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="gateway-load-") as tmp:
        work = Path(tmp)
        report("no subscription", phase(args, work, free_port(), subscribe=False))
        if args.skip_subscription:
            return
        lambda_port = free_port()
        cargo_lambda = ROOT / ".venv" / "bin" / "cargo-lambda"
        watch = subprocess.Popen(
            [str(cargo_lambda if cargo_lambda.exists() else "cargo-lambda"), "lambda", "watch", "--release",
             "--invoke-address", "127.0.0.1", "--invoke-port", str(lambda_port), "--ignore-changes"],
            cwd=ROOT, stdout=open(work / "watch.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(lambda_port, "cargo lambda watch")
            report("one subscription", phase(args, work, lambda_port, subscribe=True))
        finally:
            os.killpg(watch.pid, signal.SIGTERM)
            watch.wait(timeout=30)


if __name__ == "__main__":
    main()
