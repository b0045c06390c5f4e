"""Drive headless Chromium over the DevTools protocol (aiohttp websockets, no extra package)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def dashboard_page(url: str, token: str, route: str, expect: str, screenshot: Path,
                   profile: Path, timeout_s: float = 60) -> str:
    """Log in to the Ray dashboard the way its token dialog does, open ``route``, wait until
    the page text contains ``expect``, save a screenshot; returns the page text."""
    proc = subprocess.Popen(
        [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1400,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        return asyncio.run(_drive(page["webSocketDebuggerUrl"], url, token, route, expect,
                                  screenshot, timeout_s))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def _drive(ws_url, url, token, route, expect, screenshot, timeout_s) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(
            ws_url, max_msg_size=0) as ws:
        ids = iter(range(1, 1_000_000))

        async def call(method: str, **params):
            n = next(ids)
            await ws.send_json({"id": n, "method": method, "params": params})
            while True:
                msg = json.loads((await ws.receive()).data)
                if msg.get("id") == n:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg["result"]

        async def evaluate(expression: str):
            result = await call("Runtime.evaluate", expression=expression, awaitPromise=True,
                                returnByValue=True)
            return result["result"].get("value")

        await call("Page.enable")
        await call("Page.navigate", url=f"{url}/")
        await _until(lambda: evaluate("document.readyState"), "complete", 30)
        # The dashboard's login: POST the token, the server sets an HttpOnly cookie.
        status = await evaluate(
            "fetch('/api/authenticate', {method: 'POST', headers: {Authorization: "
            f"'Bearer {token}'}}}}).then(r => r.status)")
        assert status == 200, f"/api/authenticate answered {status}"
        await call("Page.navigate", url=f"{url}/?session=1#{route}")
        text = ""
        deadline = time.monotonic() + timeout_s
        while expect not in text and time.monotonic() < deadline:
            await asyncio.sleep(1)
            text = await evaluate("document.body ? document.body.innerText : ''") or ""
        shot = await call("Page.captureScreenshot", format="png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return text


async def _until(probe, value, timeout_s):
    deadline = time.monotonic() + timeout_s
    while await probe() != value:
        assert time.monotonic() < deadline, f"page never reached {value}"
        await asyncio.sleep(0.2)
