"""`grpokit view --serve`: the same page from a local server (127.0.0.1 only), for runs whose
completions do not fit in one file. The page holds metrics and groups for every step and asks
for each step's completions when it is shown (GET step/N.json: the rollouts record and the text
of its token ids)."""

from __future__ import annotations

import json
import re
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from grpokit.viewer.data import RunData
from grpokit.viewer.page import _step_for_page, payload, render_html, vocab_for


class ViewerHandler(BaseHTTPRequestHandler):
    def __init__(self, *args, run: RunData, page: bytes, decode=None, **kwargs):
        self.run, self.page, self.decode = run, page, decode
        super().__init__(*args, **kwargs)

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            return self._send(200, self.page, "text/html; charset=utf-8")
        match = re.fullmatch(r"/step/(\d+)\.json", path)
        if match and int(match.group(1)) in self.run.offsets:
            record = self.run.read_step(int(match.group(1)))
            body = {"step": _step_for_page(record), "vocab": vocab_for([record], self.decode)}
            return self._send(200, json.dumps(body, allow_nan=False).encode(), "application/json")
        return self._send(404, b"not found", "text/plain")

    def log_message(self, format, *args) -> None:  # quiet: one line per request is noise here
        return None


def make_server(run: RunData, *, port: int = 0, decode=None) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:`port` (0 = any free port) whose page embeds no completions."""
    page = render_html(payload(run, steps=[], decode=decode, lazy=True)).encode()
    handler = partial(ViewerHandler, run=run, page=page, decode=decode)
    return ThreadingHTTPServer(("127.0.0.1", port), handler)
