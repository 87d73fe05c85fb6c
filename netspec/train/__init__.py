"""Training: `netspec train`, `netspec eval` and `netspec augment`.

This package's top level stays free of torch, so the CLI can register the commands
(netspec.train.commands) without slowing `netspec compile` down.
"""

from __future__ import annotations
