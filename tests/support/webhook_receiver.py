"""A webhook receiver for the tests: an HTTP server on 127.0.0.1 (a free
port, printed on the first line of stdout) that records every request it
gets as one JSON line in LOG (path, lower-cased headers, body, the status it
answered) and answers by the first segment of the path:

  /ok/...          204
  /flaky/N/...     503 (Retry-After: 1) to the first N requests of each
                   webhook-id, then 200
  /limited/S/...   429 with Retry-After: S (seconds) to every request
  /gone/...        410 Gone
  /slow/S/...      waits S seconds, then 200
  /redirect/...    302 to the cloud metadata address (169.254.169.254)
  /slack/...       200 "ok" (a Slack incoming webhook's answer)
  /teams/...       200 "1" (a Teams incoming webhook's answer)

Usage: webhook_receiver.py LOG
"""
import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[1]
lock = threading.Lock()
seen = Counter()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n)
        parts = [p for p in self.path.split("/") if p]
        kind = parts[0] if parts else ""
        key = (self.path, self.headers.get("webhook-id"))
        with lock:
            seen[key] += 1
            count = seen[key]
        status, headers, reply = 204, [], b""
        if kind == "flaky" and count <= int(parts[1]):
            status, headers = 503, [("Retry-After", "1")]
        elif kind == "flaky":
            status = 200
        elif kind == "limited":
            status, headers = 429, [("Retry-After", parts[1])]
        elif kind == "gone":
            status = 410
        elif kind == "slow":
            time.sleep(float(parts[1]))
            status = 200
        elif kind == "redirect":
            status, headers = 302, [("Location", "http://169.254.169.254/latest/meta-data/")]
        elif kind == "slack":
            status, reply = 200, b"ok"
        elif kind == "teams":
            status, reply = 200, b"1"
        record = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "status": status,
            "at": time.time(),
        }
        with lock, open(LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.answer(status, reply, headers)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
