"""The moonshot's client traffic (bench/traffic.py) asks again, as a client would, when the API
answers 503 or not at all, and says so in its audit rather than failing the run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import traffic
from domain.ids import WalletKey

KEY = WalletKey("client-1", "USA", "USD")
BALANCE = b'{"credit": "1.00", "debit": "0.00", "historical_credit": "1.00"}'


class ScriptedApi(BaseHTTPRequestHandler):
    """Answers each GET by the next entry of `script`: a status, or "silent" (no answer
    before the client's timeout); 200 once the script is spent."""

    script: list[int | str] = []
    asked = 0
    base = ""  # the fixture's server

    def do_GET(self) -> None:
        type(self).asked += 1
        step = type(self).script.pop(0) if type(self).script else 200
        if step == "silent":
            time.sleep(0.6)
            return
        body = BALANCE if step == 200 else b'{"error": {"code": "store_unavailable"}}'
        self.send_response(int(step))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[ScriptedApi]]:
    monkeypatch.setattr(traffic, "REQUEST_TIMEOUT_S", 0.2)
    ScriptedApi.script, ScriptedApi.asked = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ScriptedApi.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield ScriptedApi
    server.shutdown()
    server.server_close()


def clients(api: type[ScriptedApi]) -> traffic.Traffic:
    return traffic.Traffic(
        api.base,
        authorization="Token x",
        writes_per_s=1,
        legacy=[KEY],
        new=[KEY],
    )


def test_a_read_not_answered_in_time_is_asked_again_and_counted(api: type[ScriptedApi]) -> None:
    api.script = ["silent"]
    sent = clients(api)

    sent._read()

    assert api.asked == 2
    assert sent.tally.asked_again == {"read no answer in 0 s": 1}
    assert not sent.tally.unexpected
    assert len(sent.samples) == 1 and sent.samples[0].latency_s >= 0.2  # the whole wait


def test_a_read_answered_503_is_counted_by_its_code(api: type[ScriptedApi]) -> None:
    api.script = [503, 503]
    sent = clients(api)

    sent._read()

    assert api.asked == 3
    assert sent.tally.asked_again == {"read 503 store_unavailable": 1}


def test_a_read_never_answered_is_unexpected_once_the_wait_is_over(
    api: type[ScriptedApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(traffic, "ANSWER_WAIT_S", 0.0)
    api.script = ["silent", "silent"]
    sent = clients(api)

    sent._guarded(sent._read)

    assert api.asked == 1
    assert not sent.tally.asked_again and not sent.samples
    assert sum(sent.tally.unexpected.values()) == 1
    assert "ReadTimeout" in next(iter(sent.tally.unexpected))
