"""Schemathesis against a local cloud of its own (`make api-fuzz`, part of `make test`).

1. Starts `localcloud dev` on a free port and waits until it serves /openapi.json.
2. Mints a customer's and an admin's token (`localcloud token`).
3. Arranges real objects through the API, as a shopper and staff would: an active product with
   stock, a cart, an order placed, confirmed, shipped (captured), delivered, a return and a
   refund, so that generated requests reach past "not found" into the handlers.
4. Runs Schemathesis on the served document with the checks below, as the customer on every
   route and as the admin on /admin routes; the ids above are offered as path parameters for
   most requests (the rest are generated).
5. Prints which problem types the run met, stops the local cloud, and exits with Schemathesis's
   status.

Standard library only: it runs with the Schemathesis venv's Python. Reports (JUnit, HAR) and the
local cloud's log go to $CARGO_TARGET_DIR/api-fuzz/.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
LOCALCLOUD = Path(os.environ.get("LOCALCLOUD", TARGET / "debug" / "localcloud"))
OUT = TARGET / "api-fuzz"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")

# Test cases per operation and phase; the run's time grows with it (see README, Testing).
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "40"))
# CI replays one fixed seed, so a submission passes or fails on its own merits, not on the draw;
# a developer's run draws a new one each time (it prints it) to explore further.
SEED = os.environ.get("API_FUZZ_SEED") or ("20261128" if os.environ.get("CI") else None)
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def log(message):
    print(f"api-fuzz: {message}", flush=True)


def start_cloud():
    """`localcloud dev --port 0`; returns (process, base URL) once /openapi.json answers."""
    if not LOCALCLOUD.exists():
        sys.exit(f"no {LOCALCLOUD}: run cargo build --workspace --bins (make test does), or set LOCALCLOUD")
    OUT.mkdir(parents=True, exist_ok=True)
    logfile = open(OUT / "localcloud.log", "w")
    process = subprocess.Popen(
        [str(LOCALCLOUD), "--root", str(ROOT), "dev", "--port", "0"],
        stdout=subprocess.PIPE, stderr=logfile, text=True, start_new_session=True,
    )
    found = {}

    def read():
        for line in process.stdout:
            logfile.write(line)
            logfile.flush()
            match = re.search(r"running on (http://[\d.]+:\d+)", line)
            if match and "url" not in found:
                found["url"] = match.group(1)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 120
    while "url" not in found:
        if process.poll() is not None:
            sys.exit(f"localcloud exited with {process.returncode}; see {OUT}/localcloud.log")
        if time.monotonic() > deadline:
            stop_cloud(process)
            sys.exit(f"localcloud did not start in 120 s; see {OUT}/localcloud.log")
        time.sleep(0.2)
    url = found["url"]
    until(lambda: call(url, "GET", "/openapi.json")[0] == 200, "the local cloud serves /openapi.json")
    return process, url


def stop_cloud(process):
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # like Ctrl-C: it stops moto, Stripe's emulator, every function
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def token(subject, admin=False):
    args = [str(LOCALCLOUD), "--root", str(ROOT), "token", subject] + (["--admin"] if admin else [])
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def call(base, method, path, body=None, token=None, headers=None):
    """One request; returns (status, parsed JSON body or None)."""
    request = urllib.request.Request(base + path, method=method)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=30) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return status, (json.loads(text) if text else None)


def until(check, what, timeout=60):
    """Polls `check` until it returns something truthy, or fails saying what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"api-fuzz: timed out after {timeout} s waiting until {what}")
        time.sleep(0.2)


def expect(reply, status, what):
    if reply[0] != status:
        raise SystemExit(f"api-fuzz: {what} answered {reply[0]} {reply[1]}")
    return reply[1]


def arrange(base, customer, admin):
    """Real objects for the generated requests to find: returns the ids, by kind."""
    word = uuid.uuid4().hex[:8]
    sku = f"FUZZ-{word.upper()}"
    product = expect(call(base, "POST", "/admin/products", {
        "slug": f"fuzz-{word}", "title": "Fuzzed Mug", "category": "fuzz", "status": "active",
        "variants": [{"sku": sku, "price": {"amount": 2500, "currency": "USD"}}],
    }, admin), 201, "creating the product")
    expect(call(base, "PUT", f"/admin/inventory/{sku}", {"warehouse": "main", "on_hand": 50}, admin), 200, "stocking it")
    cart = expect(call(base, "POST", "/carts", None, customer), 201, "creating a cart")
    # The cart learns the product from its ProductChanged event, a moment later.
    until(lambda: call(base, "PUT", f"/carts/{cart['id']}/items/{sku}", {"quantity": 3}, customer)[0] == 200,
          "the cart sells the new product")
    order = expect(call(base, "POST", "/checkout", {
        "cart_id": cart["id"], "email": "fuzz@example.com", "shipping_method": "standard",
        "payment_method": "pm_card_visa",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "62701", "country": "US"},
    }, customer, {"idempotency-key": str(uuid.uuid4())}), 202, "placing the order")
    order_id = order["order_id"]

    def order_where(test):
        status, body = call(base, "GET", f"/orders/{order_id}", None, customer)
        return body if status == 200 and test(body) else None

    shipment = until(lambda: order_where(lambda o: o["status"] == "confirmed" and o["shipments"]), "the order is confirmed with a shipment")["shipments"][0]["id"]
    expect(call(base, "POST", f"/admin/shipments/{shipment}/dispatch", {"carrier": "ups", "tracking_number": f"1Z{word}"}, admin), 200, "dispatching")
    until(lambda: order_where(lambda o: o["payment"]["captured"]), "the dispatch captured the payment")
    expect(call(base, "POST", f"/admin/shipments/{shipment}/deliver", None, admin), 200, "delivering")
    until(lambda: order_where(lambda o: o["status"] == "delivered"), "the order is delivered")
    ret = expect(call(base, "POST", f"/orders/{order_id}/returns", {"lines": [{"sku": sku, "quantity": 1}], "reason": "damaged"}, customer, headers={"idempotency-key": "arrange-return"}), 201, "asking for a return")
    expect(call(base, "POST", f"/admin/orders/{order_id}/refunds", {"amount": 100, "reason": "other"}, admin, {"idempotency-key": str(uuid.uuid4())}), 201, "refunding part")
    return {"product": product["id"], "sku": sku, "cart": cart["id"], "order": order_id, "shipment": shipment, "return": ret["id"]}


def config(ids, customer, admin):
    """schemathesis.toml for this run: checks, volume, who calls what, and which ids to offer."""
    def dictionary(name, value):
        return f'[dictionaries.{name}]\nvalues = ["{value}"]\n'

    def operations(regex, auth, bindings, exclude=None):
        lines = ["[[operations]]", f'include-path-regex = "{regex}"']
        if exclude:
            lines.append(f'exclude-path-regex = "{exclude}"')
        lines.append(f'headers = {{ Authorization = "Bearer {auth}" }}')
        if bindings:
            # Most cases get the real object, the rest a generated value (a malformed or unknown id).
            pairs = ", ".join(f'"path.{p}" = {{ dictionary = "{d}", probability = 0.7 }}' for p, d in bindings)
            lines.append(f"parameters = {{ {pairs} }}")
        return "\n".join(lines) + "\n"

    text = [
        "# Written by tests/schemathesis/run.py for one run; edit that file, not this one.",
        # One worker: two threads trip a race in Hypothesis's lambda-source cache ("AST constructor
        # recursion depth mismatch"), an error of the tool, not of the API.
        "workers = 1",
        "request-timeout = 30",
        "[generation]",
        'mode = "all"',
        f"max-examples = {EXAMPLES}",
        "[phases.stateful]",
        "enabled = false",
        "",
    ]
    for kind, value in ids.items():
        text.append(dictionary(kind, value))
    routes = [
        ("^/products/", customer, [("id", "product")], None),
        ("^/admin/products/", admin, [("id", "product")], None),
        ("^/admin/inventory/", admin, [("sku", "sku")], None),
        ("^/carts/", customer, [("id", "cart"), ("sku", "sku")], None),
        ("^/orders/", customer, [("id", "order")], None),
        ("^/admin/orders/", admin, [("id", "order")], None),
        ("^/admin/returns/", admin, [("id", "return")], None),
        ("^/admin/shipments/", admin, [("id", "shipment")], None),
        ("^/admin/(products|orders|returns|shipments)$", admin, [], None),
        ("^/[a-z-]+$", customer, [], "^/admin"),
    ]
    for regex, auth, bindings, exclude in routes:
        text.append(operations(regex, auth, bindings, exclude))
    return "\n".join(text)


def problem_types(har_path):
    """The problem types, and the statuses of API Gateway's own answers, that the run met."""
    seen = {}
    try:
        entries = json.loads(har_path.read_text())["log"]["entries"]
    except (OSError, ValueError, KeyError):
        return seen
    for entry in entries:
        response = entry["response"]
        text = response.get("content", {}).get("text") or ""
        try:
            body = json.loads(text)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("type"), str):
            key = f"{body['type']} ({response['status']})"
        elif isinstance(body, dict) and "message" in body:
            key = f"API Gateway {response['status']} {body['message']}"
        else:
            continue
        seen[key] = seen.get(key, 0) + 1
    return seen


def main():
    started = time.monotonic()
    process, base = start_cloud()
    try:
        customer, admin = token("fuzz-customer"), token("fuzz-admin", admin=True)
        ids = arrange(base, customer, admin)
        log(f"local cloud on {base}, arranged {ids} in {time.monotonic() - started:.0f} s")
        config_path = OUT / "schemathesis.toml"
        config_path.write_text(config(ids, customer, admin))
        command = [
            str(SCHEMATHESIS), "--config-file", str(config_path), "run", f"{base}/openapi.json",
            "--url", base, "--checks", CHECKS, "--phases", "examples,coverage,fuzzing",
            "--report", "junit,har", "--report-dir", str(OUT), "--no-color",
        ]
        if SEED:
            command += ["--seed", SEED]
        fuzz_started = time.monotonic()
        # hooks.py signs most generated Stripe webhooks, as Stripe would.
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "hooks", "PYTHONPATH": str(Path(__file__).resolve().parent)}
        result = subprocess.run(command, cwd=OUT, env=env)
        log(f"schemathesis took {time.monotonic() - fuzz_started:.0f} s (exit {result.returncode})")
        seen = problem_types(max(OUT.glob("har-*.json"), default=OUT / "none.json", key=lambda p: p.stat().st_mtime))
        for key in sorted(seen):
            log(f"  met {key}: {seen[key]} responses")
        return result.returncode
    finally:
        stop_cloud(process)
        log(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
