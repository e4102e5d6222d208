"""An HTTP proxy in front of an object-store server that holds one chosen request until
the test lets it go: two clients' requests interleave exactly as a race would have them."""
import http.client
import http.server
import threading
import urllib.parse

from serving.process import free_port

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection",
               "content-length"}


class HoldingProxy:
    """Forwards every request to ``upstream`` (http://host:port); the first one for which
    ``hold(method, path, headers)`` is true waits, before it is forwarded, until
    ``release()``. ``held`` is set once it waits."""

    def __init__(self, upstream: str, hold):
        self.held, self._released = threading.Event(), threading.Event()
        self._hold, self._lock, self._taken = hold, threading.Lock(), False
        target = urllib.parse.urlsplit(upstream)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as S3 clients use

            def _forward(self):
                body = self._body()
                if proxy._should_hold(self.command, self.path, self.headers):
                    proxy.held.set()
                    proxy._released.wait()
                upstream_connection = http.client.HTTPConnection(target.hostname, target.port,
                                                                 timeout=300)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                upstream_connection.request(self.command, self.path, body=body,
                                            headers=headers)
                response = upstream_connection.getresponse()
                data = response.read()
                upstream_connection.close()
                self.send_response_only(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                # a HEAD's answer has the object's length, and no body
                self.send_header("Content-Length", response.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if not size:  # the last chunk: trailers, if any, to a blank line
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size + 2)[:size])  # and its CRLF
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):  # quiet: the test reads the pushes' output
                pass

        self.endpoint = f"http://127.0.0.1:{free_port()}"
        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", int(self.endpoint.rsplit(":", 1)[1])), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _should_hold(self, method: str, path: str, headers) -> bool:
        with self._lock:
            if self._taken or not self._hold(method, path, headers):
                return False
            self._taken = True
            return True

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
