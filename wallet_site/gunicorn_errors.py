"""gunicorn's own error answers (a request line over `limit_request_line`, headers over
their limits, a malformed request) in the API's JSON error shape instead of its HTML page.

gunicorn writes these before any URL is routed, so the app's middleware never sees them;
`gunicorn.conf.py` installs this writer in place of `gunicorn.util.write_error`.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Same signature and framing as gunicorn's write_error; a JSON body."""
    # Load-order breaker: gunicorn imports this module (its config) before Django is set up;
    # the app is loaded by the time gunicorn answers.
    from api.middleware import error_code_for_status  # noqa: PLC0415
    from domain.errors import error_body  # noqa: PLC0415

    message = f"{reason}: {mesg}" if mesg else f"{reason}."
    body = json.dumps(error_body(error_code_for_status(status_int), message=message)).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


def install() -> None:
    util.write_error = write_json_error
