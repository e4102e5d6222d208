"""The base of the tests' stand-ins for remote JSON APIs (Kubernetes, KFP, Vertex AI)
on 127.0.0.1: the real client libraries talk to them over real sockets."""
import json
from http.server import BaseHTTPRequestHandler


class JsonApiHandler(BaseHTTPRequestHandler):
    """Reads JSON request bodies and writes JSON replies; logs nothing."""

    def json_body(self):
        """The request's JSON body, or None without one."""
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def reply(self, body, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass
