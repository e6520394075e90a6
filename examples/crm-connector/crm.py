"""A CRM-like HTTP API, standing in for the customer's CRM in the example:
cases (one per closeloop ticket) and comments on them. Standard library
only.

  PUT  /api/cases/{id}            create or replace a case (JSON)
  GET  /api/cases                 every case, with its comments
  GET  /api/cases/{id}            one case
  POST /api/cases/{id}/comments   a customer comment logged in the CRM
                                  ({"id", "text"}); the CRM calls its
                                  outbound hook (--hook URL) with
                                  {"case_id", "comment"} for each new one

Usage: crm.py --port N [--hook URL]   (prints "listening PORT" when ready)
"""
import argparse
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cases = {}
lock = threading.Lock()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--hook", default="")
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, doc=None):
            body = b"" if doc is None else json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def read(self):
            n = int(self.headers.get("content-length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def parts(self):
            return [p for p in self.path.split("?")[0].split("/") if p]

        def do_GET(self):
            p = self.parts()
            with lock:
                if p == ["api", "cases"]:
                    return self.reply(200, sorted(cases.values(), key=lambda c: c["id"]))
                if len(p) == 3 and p[:2] == ["api", "cases"] and p[2] in cases:
                    return self.reply(200, cases[p[2]])
            self.reply(404, {"error": "no such case"})

        def do_PUT(self):
            p = self.parts()
            if len(p) != 3 or p[:2] != ["api", "cases"]:
                return self.reply(404, {"error": "no such resource"})
            doc = self.read()
            with lock:
                old = cases.get(p[2], {})
                doc["id"] = p[2]
                doc["comments"] = old.get("comments", [])
                cases[p[2]] = doc
            self.reply(200, doc)

        def do_POST(self):
            p = self.parts()
            if len(p) != 4 or p[:2] != ["api", "cases"] or p[3] != "comments":
                return self.reply(404, {"error": "no such resource"})
            comment = self.read()
            with lock:
                case = cases.get(p[2])
                if case is None:
                    return self.reply(404, {"error": "no such case"})
                new = all(c["id"] != comment["id"] for c in case["comments"])
                if new:
                    case["comments"].append(comment)
            if new and args.hook:
                req = urllib.request.Request(
                    args.hook,
                    data=json.dumps({"case_id": p[2], "comment": comment}).encode(),
                    headers={"content-type": "application/json"},
                    method="POST",
                )
                urllib.request.urlopen(req, timeout=10).read()
            self.reply(201, comment)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
