"""Test-only browser setup: Debian's chromium driven by Playwright, axe-core from npm.

Never `playwright install`: the browser is the system's `/usr/bin/chromium`
(`scripts/ensure-chromium.sh` installs it). axe-core is installed on first use into the
git-ignored `tests/.node/`. Anything missing is a test failure that says what to install.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, TEST_ENV
from tests.node import NODE_DIR, node_modules

CHROMIUM = Path(os.environ.get("LEARNCAST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
AXE = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


@pytest.fixture(scope="session")
def axe_source() -> str:
    node_modules()
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the browser tests need Debian's chromium; run "
                    "scripts/ensure-chromium.sh as root, or `sudo apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def axe_violations(page: Any, source: str) -> list[dict[str, Any]]:
    """Serious and critical WCAG 2.x A/AA violations axe-core finds in the page."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)  # through the devtools protocol: the page's CSP stays strict
    found = page.evaluate(
        """async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))
            .violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                   nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))""",
        AXE_TAGS)
    return [v for v in found if v["impact"] in ("serious", "critical")]


class ReviewServer:
    """`learncast review --port 0` in a child process, as a reviewer starts it."""

    def __init__(self, workspace: Path, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **TEST_ENV, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--workspace", str(workspace), "review",
             "--port", "0", *args], cwd=REPO, env=full_env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.url = self._read_url()

    def _read_url(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if " at http" in line:
                    return line.split(" at ", 1)[1].strip()
            if self.proc.poll() is not None:
                break
        self.close()
        raise AssertionError(f"learncast review did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
