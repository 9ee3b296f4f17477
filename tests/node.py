"""Test-only npm packages (the WebVTT validator's parser, axe-core), installed together.

Installing them one by one into the same prefix lets npm prune the other one, so every
fixture that needs one asks for all of them here, in a single `npm install`.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / ".node"
PACKAGES = {"webvtt-parser": "webvtt-parser@2.2.0", "axe-core": "axe-core@4"}


def node_modules() -> Path:
    """tests/.node/node_modules with every package in PACKAGES (a missing npm is a failure).

    Under a file lock: with `pytest -n 2` two workers may ask at once, and two npm installs
    into one prefix break each other."""
    modules = NODE_DIR / "node_modules"
    NODE_DIR.mkdir(exist_ok=True)
    with open(NODE_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((modules / name / "package.json").is_file() for name in PACKAGES):
            return modules
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed for the WebVTT validator and the accessibility tests; "
                        "run scripts/ensure-chromium.sh (as root) or `apt-get install npm`")
        proc = subprocess.run([npm, "install", "--prefix", str(NODE_DIR), "--no-audit",
                               "--no-fund", "--no-save", *PACKAGES.values()],
                              capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"npm install {' '.join(PACKAGES.values())} failed:\n{proc.stderr[-2000:]}")
    return modules
