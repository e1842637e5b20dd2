"""A real HTTP receiver on loopback for webhook tests (http.server in a thread): it verifies
each delivery with the receiver example of docs/events.md (its code block, run as written) and
answers what the test tells it to."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def receiver_example() -> dict[str, Any]:
    """The docs' receiver example, executed: its names (`verify`, `SignatureRefused`, ...)."""
    text = DOCS.read_text()
    match = re.search(r"```python\n(# receiver example.*?)```", text, re.DOTALL)
    assert match, "docs/events.md has the receiver example"
    names: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOCS), "exec"), names)  # the docs' own code
    return names


@dataclass
class Receiver:
    url: str
    secret: str
    received: list[dict[str, Any]] = field(default_factory=list)  # verified bodies, in order
    refused: list[str] = field(default_factory=list)  # why a delivery's signature was refused
    # Each request's answer: the status, given the event (default 204).
    answer: Callable[[dict[str, Any]], int] = lambda event: 204
    lock: threading.Lock = field(default_factory=threading.Lock)

    def types_of(self, reference_id: str) -> list[str]:
        return [e["type"] for e in self.received if e["reference_id"] == reference_id]


@contextmanager
def running_receiver(secret: str) -> Iterator[Receiver]:
    example = receiver_example()
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver = holder[0]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                example["verify"](receiver.secret, self.headers.get("Wallet-Signature", ""), body)
            except example["SignatureRefused"] as refused:
                with receiver.lock:
                    receiver.refused.append(str(refused))
                self.send_response(400)
                self.end_headers()
                return
            event = json.loads(body)
            status = receiver.answer(event)
            if 200 <= status < 300:
                with receiver.lock:
                    receiver.received.append(event)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Receiver(url=f"http://127.0.0.1:{server.server_port}/hooks", secret=secret))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
