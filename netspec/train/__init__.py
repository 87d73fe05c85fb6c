"""Training: what `netspec train`, `netspec eval` and `netspec augment` run (their click
commands are netspec.cli.train). This package's top level stays free of torch.
"""

from __future__ import annotations
