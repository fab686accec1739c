"""The authentication service of crates/midge/tests/http_auth.rs, on Python's http.server.

Listens on 127.0.0.1 on a free port and prints "port N" once it does. For POSTed JSON:
  user "good" with password "pw"      -> 200 {}
  user "limited" with password "pw"   -> 200 {"publish": ["limited/out/#"], "subscribe": ["limited/in/#"]}
  user "slow"                         -> no answer for 30 s (the broker's timeout must act)
  user "broken"                       -> 500
  anyone else                         -> 403
On /acl (the acl_url): user "good" -> 200 {"publish": ["good/#"], "subscribe": ["good/#"]}, else 403.
Every request is appended, as one JSON line, to the file named by argv[1] (for the test to count).
Stops after argv[2] seconds at the latest.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[1]
LIFETIME = float(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(LOG, "a") as log:
            log.write(json.dumps(body) + "\n")
        user, password = body.get("username"), body.get("password")
        if self.path == "/acl":
            if user == "good":
                self.answer(200, {"publish": ["good/#"], "subscribe": ["good/#"]})
            else:
                self.answer(403, {})
            return
        if user == "slow":
            time.sleep(30)
            return
        if user == "broken":
            self.answer(500, {})
        elif user == "good" and password == "pw":
            self.answer(200, {})
        elif user == "limited" and password == "pw":
            self.answer(200, {"publish": ["limited/out/#"], "subscribe": ["limited/in/#"]})
        else:
            self.answer(403, {})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Timer(LIFETIME, server.shutdown).start()
print(f"port {server.server_address[1]}", flush=True)
server.serve_forever()
