"""A local webhook for the alert tests: records what it is sent (the ``receiver`` fixture in conftest)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A Slack-like secret path: the tests check it never reaches a log or an error.
SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxSecretToken"


class Receiver:
    """A local webhook: records every POST body; answers with ``status``."""

    def __init__(self):
        self.status = 200
        self.bodies: list[dict] = []  # bodies answered with 2xx
        self.attempts = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    receiver.attempts += 1
                    if 200 <= receiver.status < 300:
                        receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
