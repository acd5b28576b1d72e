"""A real browser for tests: headless Chromium driven over the DevTools protocol (stdlib +
``websockets``), and a static HTTP server on 127.0.0.1 for a built site.

Usage::

    with serve(site_dir) as base_url, Chromium(tmp_path / "profile") as browser:
        page = browser.open(base_url + "index.html", width=390, height=844, mobile=True)
        page.evaluate("document.title")
        page.screenshot(tmp_path / "home.png")
        page.errors, page.dialogs          # console errors, exceptions, failed loads; alert() calls

Nothing leaves the machine: the browser is started with its background networking,
component updates and sync off and no proxy, and only ever pointed at 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
START_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 30.0


def chromium_path() -> str | None:
    for c in CHROMIUM_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    return shutil.which("chromium")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) in a thread; yields the base URL (with a slash)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Page:
    """One tab, over its own DevTools websocket."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(ws_url, max_size=None, open_timeout=START_TIMEOUT_S))
        self._next = 0
        self.errors: list[str] = []  # console errors, uncaught exceptions, failed loads, CSP violations
        self.dialogs: list[str] = []  # alert(), confirm(), prompt() calls
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def close(self) -> None:
        self._stack.close()

    def call(self, method: str, timeout: float = LOAD_TIMEOUT_S, **params: Any) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = self._receive(deadline, method)
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer from the browser for {waiting_for}")
        msg = json.loads(self.ws.recv(timeout=left))
        if "method" in msg:
            self._event(msg)
        return msg

    def _event(self, msg: dict[str, Any]) -> None:
        method, p = msg["method"], msg.get("params", {})
        self.events.append(msg)
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = (str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.errors.append("console: " + " ".join(args))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log: {e.get('text')} {e.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            self.errors.append(f"network: {p.get('errorText')} ({p.get('type')})")
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(f"{p.get('type')}: {p.get('message')}")
            self.ws.send(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}))

    def goto(self, url: str, timeout: float = LOAD_TIMEOUT_S) -> None:
        """Navigate and wait for the load event, then for the document to be complete."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            self._receive(deadline, f"the load of {url}")
        while self.evaluate("document.readyState") != "complete":
            time.sleep(0.05)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} never completed")

    def settle(self, seconds: float) -> None:
        """Let the page run for a while (its scripts, the search worker), collecting events."""
        deadline = time.monotonic() + seconds
        self.call("Runtime.evaluate", expression="1")
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                self._receive(min(deadline, time.monotonic() + 0.2), "events")

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression!r} threw: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def viewport(self, width: int, height: int, mobile: bool = False, scale: float = 1.0) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=scale,
                  mobile=mobile)

    def color_scheme(self, scheme: str) -> None:
        """Emulate the reader's system preference, "light" or "dark" (the theme follows it)."""
        self.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": scheme}])

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}
            params.update(captureBeyondViewport=True, clip=clip)
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


class Chromium:
    """Headless Chromium with a throwaway profile in `profile`; `open` gives a new tab."""

    def __init__(self, profile: Path, binary: str | None = None):
        self.binary = binary or chromium_path()
        if self.binary is None:
            raise FileNotFoundError("no Chromium binary found")
        self.profile = Path(profile)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pages: list[Page] = []

    def __enter__(self) -> Chromium:
        self.profile.mkdir(parents=True, exist_ok=True)
        active = self.profile / "DevToolsActivePort"
        active.unlink(missing_ok=True)  # a reused profile keeps the port of its last run
        args = [
            self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
            "--no-proxy-server", "--metrics-recording-only", "--mute-audio", "--hide-scrollbars",
            f"--user-data-dir={self.profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            "about:blank",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (active.exists() and active.read_text().strip()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited at start (code {self.proc.returncode})")
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise TimeoutError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        self.port = int(active.read_text().split()[0])
        return self

    def open(self, url: str = "about:blank") -> Page:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with opener.open(req, timeout=START_TIMEOUT_S) as resp:
            target = json.loads(resp.read())
        page = Page(target["webSocketDebuggerUrl"])
        self.pages.append(page)
        if url != "about:blank":
            page.goto(url)
        return page

    def __exit__(self, *exc: object) -> None:
        for page in self.pages:
            with contextlib.suppress(Exception):
                page.close()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # the browser and its helpers, only ours
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
