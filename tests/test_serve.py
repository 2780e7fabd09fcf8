"""`loomtui serve`: the app in a real headless Chromium, driven over the DevTools protocol.

The browser is Debian's `chromium`, spoken to over CDP with aiohttp's websocket client (aiohttp
comes with textual-serve): no browser driver to install, and the browser is our own child, in
its own process group, so teardown kills it and everything it started.
"""

from __future__ import annotations

import asyncio
import base64
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from loomtui.cli.serve import is_loopback, same_origin
from tests.conftest import run_cli

CHROMIUM = "/usr/bin/chromium"
STARTUP = 30.0
"""Seconds a process may take to come up or a screen to appear (generous: a loaded machine is slow, not wrong)."""
EMPTY_DASHBOARD = "No sandboxes here now"

# xterm.js draws on a canvas, and textual-serve keeps its Terminal in a closure. The one hook:
# the public Terminal sets `this._core` in its constructor, so a setter on Object.prototype sees
# it (and every other object that sets `_core`; the reader below picks the one with a buffer).
CAPTURE_TERMINALS = """
window.__terminals = [];
Object.defineProperty(Object.prototype, "_core", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "_core", {value, writable: true, configurable: true, enumerable: true});
    window.__terminals.push(this);
  },
});
"""
SCREEN_TEXT = """(() => {
  for (const t of window.__terminals || []) {
    let buffer;
    try { buffer = t.buffer && t.buffer.active; } catch (e) { continue; }
    if (!buffer || typeof buffer.getLine !== "function") continue;
    const lines = [];
    for (let y = 0; y < t.rows; y++) {
      const line = buffer.getLine(buffer.viewportY + y);
      lines.push(line ? line.translateToString(true) : "");
    }
    return lines.join("\\n");
  }
  return "";
})()"""


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process's group, SIGKILL what is left after a few seconds."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's first line of stdout; fails naming its stderr if none comes in time."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line:
        _kill_group(process)
        stderr = process.stderr.read() if process.stderr else ""
        raise AssertionError(f"no line from {process.args!r} (exit {process.returncode}): {stderr}")
    return line


@pytest.fixture
def served(repo: Path) -> Iterator[tuple[str, str]]:
    """`loomtui serve --port 0` on `repo`, a real process: (its URL, the line it printed)."""
    server = subprocess.Popen([sys.executable, "-m", "loomtui", "-C", str(repo), "serve", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = _read_line(server, STARTUP)
        url = next(word for word in line.split() if word.startswith("http://"))
        yield url, line
    finally:
        _kill_group(server)


@pytest.fixture
def devtools(tmp_path: Path) -> Iterator[int]:
    """A headless Chromium with a DevTools port (returned), in its own process group."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
    profile = tmp_path / "chromium-profile"
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1280,800",
         # Loopback only: the page's web font (fonts.googleapis.com) fails at once, offline or not.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        active = profile / "DevToolsActivePort"  # Chromium writes its port here once it listens
        deadline = time.monotonic() + STARTUP
        while not (active.exists() and active.read_text().count("\n") >= 1):
            assert browser.poll() is None, f"chromium exited with {browser.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        yield int(active.read_text().splitlines()[0])
    finally:
        _kill_group(browser)
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """One tab over CDP: a command at a time, events skipped."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.last_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.ws.send_json({"id": self.last_id, "method": method, "params": params})
        async for message in self.ws:
            reply = message.json()
            if reply.get("id") == self.last_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                result: dict[str, Any] = reply["result"]
                return result
        raise AssertionError(f"{method}: the browser closed the connection")

    async def screen(self) -> str:
        """The terminal's visible lines, as xterm.js holds them."""
        result = await self.call("Runtime.evaluate", expression=SCREEN_TEXT, returnByValue=True)
        return str(result["result"].get("value", ""))

    async def wait_screen(self, holds: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + STARTUP
        text = await self.screen()
        while not holds(text):
            assert time.monotonic() < deadline, f"timed out waiting for {what}; the screen:\n{text}"
            await asyncio.sleep(0.1)
            text = await self.screen()
        return text

    async def press(self, key: str, code: str, key_code: int) -> None:
        """A key pressed and released on the focused terminal (xterm.js reads keydown, keypress)."""
        await self.call("Runtime.evaluate", expression="document.querySelector('.xterm-helper-textarea').focus()")
        await self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=code, text=key,
                        windowsVirtualKeyCode=key_code)
        await self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=key_code)


async def _with_page(port: int, use: Callable[[Page], Awaitable[None]]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        (tab,) = [t for t in targets if t["type"] == "page"]
        async with session.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            await use(Page(ws))


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_the_app_in_a_browser_renders_and_takes_keys(served: tuple[str, str], devtools: int,
                                                           repo: Path, tmp_path: Path) -> None:
    url, line = served
    assert url.startswith("http://127.0.0.1:") and str(repo) in line

    async def drive(page: Page) -> None:
        await page.call("Page.enable")  # without it the script below is not run on navigation
        await page.call("Page.addScriptToEvaluateOnNewDocument", source=CAPTURE_TERMINALS)
        await page.call("Page.navigate", url=url)
        header = f"  {repo.name} on main  "  # the repository served, and its branch (the header's)
        # A frame arrives in pieces: wait for the header and the table's text both.
        dashboard = await page.wait_screen(lambda text: header in text and EMPTY_DASHBOARD in text, "the dashboard")
        assert "Claims and their neighbourhood" not in dashboard
        shot = base64.b64decode((await page.call("Page.captureScreenshot", format="png"))["data"])
        (tmp_path / "dashboard.png").write_bytes(shot)
        width, height = _png_size(shot)
        assert width > 0 and height > 0 and len(shot) > 5000, (width, height, len(shot))
        await page.press("2", "Digit2", 50)  # the Claims view
        await page.wait_screen(lambda text: "Claims and their neighbourhood" in text and header in text
                               and EMPTY_DASHBOARD not in text, "the Claims view drawn whole")

    await _with_page(devtools, drive)


async def test_without_the_printed_key_in_the_path_nothing_answers(served: tuple[str, str]) -> None:
    """Loopback is open to every process here (an agent whose runtime has the network) and to any web
    page the user opens: only the printed address drives the app. The key is in its path, never in a
    cookie: a browser sends a host's cookies to every port on it, an agent's dev server's included."""
    url, _ = served
    base, key = url.rstrip("/").rsplit("/", 1)
    assert len(key) >= 20 and url == f"{base}/{key}/"
    async with aiohttp.ClientSession() as session:
        for guess in (f"{base}/", f"{base}/ws", f"{base}/static/js/textual.js", f"{base}/{key[:-1]}/",
                      f"{base}/{key}x/ws"):
            async with session.get(guess) as response:
                assert response.status == 403, guess
                assert "the address `loomtui serve` printed" in await response.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{base}/ws?width=80&height=24")
        assert refused.value.status == 403
        async with session.get(url) as response:
            page = await response.text()
            assert response.status == 200 and f"/{key}/ws" in page and not response.cookies
            # Nothing fetched from the internet: the page loaded Roboto Mono from Google Fonts.
            assert "googleapis" not in page and "xterm.css" in page
        # A page of another site whose name was pointed at 127.0.0.1 (DNS rebinding) sends its own name.
        async with session.get(url, headers={"Host": f"rebound.example:{urlsplit(base).port}"}) as response:
            assert response.status == 403 and "a loopback name only" in await response.text()
        async with session.get(f"{url}static/js/textual.js") as response:
            assert response.status == 200
        # Another site's page that somehow had the address: refused by its Origin.
        with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
            await session.ws_connect(f"{url}ws?width=80&height=24", origin="http://evil.example")
        assert foreign.value.status == 403
        async with session.ws_connect(f"{url}ws?width=80&height=24", origin=base) as ws:
            first = await ws.receive(timeout=STARTUP)  # the app's first bytes: it started for this tab
            assert first.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), first


@pytest.mark.parametrize(("origin", "same"), [
    (None, True), ("http://127.0.0.1:8000", True), ("http://127.0.0.1:8001", False), ("http://evil.example", False),
    ("null", False), ("file://", False), ("HTTP://127.0.0.1:8000", True),
])
def test_same_origin(origin: str | None, same: bool) -> None:
    assert same_origin(origin, "127.0.0.1:8000") is same


def test_a_host_others_can_reach_needs_public(repo: Path) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        done = run_cli(repo, "serve", "--host", host, "--port", "0")
        assert done.returncode == 2, (host, done)
        assert done.stdout == ""
        (message,) = done.stderr.splitlines()
        assert host in message and "--public" in message


def test_a_taken_port_is_one_line(repo: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_cli(repo, "serve", "--port", str(port))
    assert done.returncode == 2, done
    assert done.stdout == ""  # no URL printed for a server that is not there
    (message,) = done.stderr.splitlines()
    assert f"port {port}" in message and "in use" in message


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.com", False), ("localhost.evil.com", False),
])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
