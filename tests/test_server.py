"""`bnlint server` over stdio: real LSP JSON-RPC messages to a server subprocess."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import BAD_MODEL

pytest.importorskip("pygls", reason="the language server needs the server extra (pygls)")

TIMEOUT = 20  # seconds for any one answer; the server starts in about one


class LspClient:
    """Frames JSON-RPC messages with Content-Length headers; a thread reads the
    server's messages into a queue so every wait has a timeout."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        while True:
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            if not line:
                return
            self.messages.put(json.loads(stream.read(int(headers["content-length"]))))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: dict[str, Any] | None) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        reply = self.wait_for(lambda m: m.get("id") == self.next_id and "method" not in m)
        assert "error" not in reply, reply["error"]
        return reply["result"]

    def wait_for(self, matches: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            try:
                message = self.messages.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError("the language server did not answer in time") from None
            if matches(message):
                return message

    def diagnostics(self, uri: str, version: int) -> list[dict[str, Any]]:
        message = self.wait_for(
            lambda m: (
                m.get("method") == "textDocument/publishDiagnostics"
                and m["params"]["uri"] == uri
                and m["params"].get("version") == version
            )
        )
        return message["params"]["diagnostics"]


@pytest.fixture
def client(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "-m", "bnlint", "server"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    lsp = LspClient(process)
    try:
        yield lsp
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=TIMEOUT)


def apply_edits(text: str, edits: list[dict[str, Any]]) -> str:
    """Apply LSP text edits (ASCII text: UTF-16 units are characters)."""
    lines = text.splitlines(keepends=True)

    def offset(position: dict[str, int]) -> int:
        return sum(len(line) for line in lines[: position["line"]]) + position["character"]

    for edit in sorted(edits, key=lambda e: offset(e["range"]["start"]), reverse=True):
        start, end = offset(edit["range"]["start"]), offset(edit["range"]["end"])
        text = text[:start] + edit["newText"] + text[end:]
    return text


def test_diagnostics_and_code_actions_over_stdio(client: LspClient, tmp_path: Path) -> None:
    # The document's own config ignores BNL201: the server must find and use it.
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.bnlint]\nignore = ["BNL201"]\n')
    path = project / "train.py"
    path.write_text("# the file on disk is not what gets linted\n")
    uri = path.as_uri()

    result = client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    assert result["capabilities"]["codeActionProvider"]
    client.notify("initialized", {})

    document = {"uri": uri, "languageId": "python", "version": 1, "text": BAD_MODEL}
    client.notify("textDocument/didOpen", {"textDocument": document})
    (found,) = client.diagnostics(uri, version=1)
    assert found["code"] == "BNL004" and found["source"] == "bnlint"
    assert found["severity"] == 1
    assert found["range"] == {
        "start": {"line": 11, "character": 0},
        "end": {"line": 11, "character": 10},
    }

    actions = client.request(
        "textDocument/codeAction",
        {
            "textDocument": {"uri": uri},
            "range": found["range"],
            "context": {"diagnostics": [found]},
        },
    )
    (action,) = actions
    assert action["kind"] == "quickfix" and action["isPreferred"] is True
    assert action["title"].startswith("BNL004")
    fixed = apply_edits(BAD_MODEL, action["edit"]["changes"][uri])
    assert fixed == BAD_MODEL.replace("model.eval\n", "model.eval()\n")

    # A change is linted from the editor's text: the fixed text is clean.
    client.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": fixed}]},
    )
    assert client.diagnostics(uri, version=2) == []

    assert client.request("shutdown", None) is None
    client.notify("exit", None)
    assert client.process.wait(timeout=TIMEOUT) == 0


def test_unicode_columns_are_utf16_units(client: LspClient, tmp_path: Path) -> None:
    uri = (tmp_path / "emoji.py").as_uri()
    text = "import torch\nlabel = '🙂'; model.eval\n"
    client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    client.notify("initialized", {})
    document = {"uri": uri, "languageId": "python", "version": 7, "text": text}
    client.notify("textDocument/didOpen", {"textDocument": document})
    (found,) = client.diagnostics(uri, version=7)
    # 13 code points before `model`, but 🙂 is two UTF-16 units.
    assert found["range"]["start"] == {"line": 1, "character": 14}


def test_server_without_pygls_says_what_to_install() -> None:
    blocked = "import sys; sys.modules['pygls'] = None; from bnlint.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", blocked, "server"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "pip install 'bnlint[server]'" in proc.stderr
    assert "Traceback" not in proc.stderr
