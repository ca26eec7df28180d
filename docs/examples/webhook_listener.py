"""A small webhook receiver: verifies aiaas's signature and prints each finished job.

python docs/examples/webhook_listener.py 8765 "$WEBHOOK_SECRET"
"""

import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, SECRET = int(sys.argv[1]), sys.argv[2]


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        fields = dict(p.split("=", 1) for p in self.headers["Aiaas-Signature"].split(","))
        signed = f"{fields['t']}.".encode() + body
        expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        fresh = abs(time.time() - int(fields["t"])) < 300
        ok = hmac.compare_digest(expected, fields["v1"]) and fresh
        self.send_response(204 if ok else 400)
        self.end_headers()
        job = json.loads(body)
        print(f"webhook: signature {'valid' if ok else 'INVALID'}, job {job['status']}", flush=True)
        print(json.dumps(job["predictions"]), flush=True)

    def log_message(self, *args: object) -> None:
        pass


HTTPServer(("127.0.0.1", PORT), Receiver).serve_forever()
