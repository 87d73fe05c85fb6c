"""Debian's Chromium, headless, as the page's tests and its benchmark start it through
Playwright (`executable_path`: no browser of Playwright's own is downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

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


class Opened(NamedTuple):
    """A page in a fresh browser context (its own profile), and the errors it has raised."""

    context: Any
    page: Any
    errors: list[str]


def open_page(
    browser: Any, url: str, width: int = 1500, height: int = 1100, init_script: str = ""
) -> Opened:
    """Open ``url`` in a fresh context of ``width`` x ``height``, after ``init_script`` if
    given, recording every uncaught error of the page in `Opened.errors`."""
    context = browser.new_context(viewport={"width": width, "height": height})
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return Opened(context, page, errors)
