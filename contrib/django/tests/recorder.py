"""A real HTTP server standing in for userrouter's purge API: it records
each request and answers what the test says."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder:
    """Serves on 127.0.0.1:<free port> until close(). Thread-safe.

    status is the answer's status, or a function of the request's parsed
    body that returns it; headers are added to every answer."""

    def __init__(self, status=200, delay=0, headers=None):
        self.status = status
        self.delay = delay
        self.headers = headers or {}
        self.requests = []  # dicts: method, path, headers, body (parsed JSON, None when empty)
        self._lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                b = json.loads(raw) if raw else None
                with rec._lock:
                    rec.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": b})
                if rec.delay:
                    time.sleep(rec.delay)
                status = rec.status(b) if callable(rec.status) else rec.status
                if status == 200:
                    b = b or {}
                    answer = {"urls": len(b.get("urls") or []), "keys": len(b.get("keys") or []), "all": False, "soft": False}
                else:
                    answer = {"error": "test says %d" % status}
                out = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in rec.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST  # a followed redirect would arrive as a GET

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that timed out and left: expected in the timeout test

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/purge" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def bodies(self):
        with self._lock:
            return [r["body"] for r in self.requests]

    def keys(self):
        """Every key purged, as a set."""
        return {k for b in self.bodies() for k in b.get("keys") or []}

    def clear(self):
        with self._lock:
            self.requests.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
