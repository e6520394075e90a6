"""A closeloop → CRM connector: it mirrors closeloop tickets into the CRM's
cases and records the customer comments logged in the CRM back on the
tickets. Standard library only; see README.md.

* closeloop calls it (a registered webhook endpoint, POST /closeloop) with
  every ticket event, signed as Standard Webhooks describes. It checks the
  signature (HMAC-SHA256 with the endpoint's whsec_ secret, any of the
  signatures, a timestamp within 5 minutes), drops a delivery whose
  webhook-id it has seen, ignores an event older than the ticket's last
  applied one (data.sequence), and PUTs the case.
* The CRM calls it (POST /crm) for each new customer comment; it records it
  on the ticket with closeloop's HTTP API, POST /v1/tickets/{id}:reply,
  with the comment's id as the request id, so a retried call is applied
  once.

Usage: connector.py --port N --secret-file F --crm URL --closeloop URL
(prints "listening PORT" when ready)
"""
import argparse
import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300


def verify(secret, headers, body):
    """Standard Webhooks: v1,<base64 HMAC-SHA256 of id.timestamp.body>."""
    msg_id = headers.get("webhook-id", "")
    ts = headers.get("webhook-timestamp", "")
    if not msg_id or not ts.isdigit() or abs(time.time() - int(ts)) > TOLERANCE:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    for sig in headers.get("webhook-signature", "").split():
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


def call(method, url, doc):
    req = urllib.request.Request(
        url, data=json.dumps(doc).encode(), method=method,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--crm", required=True, help="the CRM's base URL")
    ap.add_argument("--closeloop", required=True, help="closeloop's HTTP URL (ticketing role)")
    args = ap.parse_args()
    secret = open(args.secret_file).read().strip()
    seen = set()
    applied = {}  # ticket id -> last applied event sequence
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, text=""):
            body = text.encode()
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path == "/closeloop":
                return self.from_closeloop(body)
            if self.path == "/crm":
                return self.from_crm(json.loads(body))
            self.answer(404)

        def from_closeloop(self, body):
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not verify(secret, headers, body):
                return self.answer(401, "bad signature")
            event = json.loads(body)
            if event["type"] == "webhook.test":
                return self.answer(204)
            data = event["data"]
            ticket = data["ticket"]
            with lock:
                if headers["webhook-id"] in seen or applied.get(ticket["id"], 0) >= data["sequence"]:
                    return self.answer(204)  # a copy, or older than what the case shows
            case = {
                "title": ticket["title"],
                "status": ticket["status"],
                "owner": ticket["owner_email"],
                "account": ticket["account_id"],
                "closeloop_sequence": data["sequence"],
                "last_event": event["type"],
            }
            if event["type"] == "ticket.closed":
                case["resolution"] = data["change"]["root_cause"]
            try:
                call("PUT", f"{args.crm}/api/cases/{ticket['id']}", case)
            except (urllib.error.URLError, OSError) as e:
                # Not applied: closeloop retries the delivery later.
                return self.answer(503, f"CRM unavailable: {e}")
            with lock:
                seen.add(headers["webhook-id"])
                applied[ticket["id"]] = max(applied.get(ticket["id"], 0), data["sequence"])
            self.answer(204)

        def from_crm(self, doc):
            comment = doc["comment"]
            try:
                status, _ = call(
                    "POST",
                    f"{args.closeloop}/v1/tickets/{doc['case_id']}:reply",
                    {
                        "request_id": f"crm-comment-{comment['id']}",
                        "actor": "crm-connector@vendor.example",
                        "text": comment["text"],
                    },
                )
            except urllib.error.HTTPError as e:
                return self.answer(502, f"closeloop refused: {e.code} {e.read().decode()}")
            self.answer(204 if status == 200 else 502)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
