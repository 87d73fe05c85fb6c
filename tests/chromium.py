"""Debian's Chromium, headless, as the page's tests and its benchmark start it through
Playwright (`executable_path`: no browser of Playwright's own is downloaded)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# headless on a machine with no display, no GPU and no network beyond loopback
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
