"""What every benchmark says about the machine it ran on: the CPU's model and the load."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model(default: str | None = None) -> str:
    """The CPU's model name from /proc/cpuinfo, else ``default`` (the platform's processor
    or machine name when not given)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default if default is not None else platform.processor() or platform.machine()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them ("unknown"
    where the platform has none)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"
