"""What the commands share: their click command class, and the options several take
(`--network`, `--set`, `--provider`, the compile limits, `--seed`), written once.

Numbers a person types are bounded here, so that a typo such as `--batch 1000000000`
is a usage error naming the flag instead of an allocation that fails later.

Every command loads this module, `netspec run` included, so it builds no Pydantic model
itself: the train section's bounds (MAX_EPOCHS, MAX_TRAIN_BATCH) and the compile limits
are read from their models when a command that takes them is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

from netspec.cli.console import reported, stdout_errors

F = TypeVar("F", bound=Callable[..., Any])

MAX_BATCH = 65_536  # samples per ONNX Runtime call (`run`, `bench`); more is a typo
MAX_SEED = 2**63 - 1  # what torch's and numpy's generators take


def spec_bound(name: str) -> int:
    """The upper bound the train section puts on ``name`` (trainspec.TrainConfig), so that
    a flag takes exactly what the spec's own setting would: one source for each bound."""
    from netspec.trainspec import TrainConfig

    metadata = TrainConfig.model_fields[name].metadata  # pydantic's Field(le=...) is here
    return next(int(m.le) for m in metadata if getattr(m, "le", None) is not None)


_SPEC_BOUNDS = {"MAX_EPOCHS": "epochs", "MAX_TRAIN_BATCH": "batch"}


def __getattr__(name: str) -> int:
    """MAX_EPOCHS and MAX_TRAIN_BATCH, the train section's bounds on `--epochs` and
    `--batch` (PEP 562: computed on first use, since trainspec loads Pydantic)."""
    field = _SPEC_BOUNDS.get(name)
    if field is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = spec_bound(field)
    return value


class Reported:
    """Mixed into a click command or group: every `NetspecError` raised while it parses its
    flags or runs becomes its message and exit code, and Ctrl-C exits 130 with
    `interrupted` (console.reported), never click's "Aborted!" and 1."""

    interrupted = "interrupted"

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with reported(self.interrupted), stdout_errors():  # --help, --version print here
            return super().make_context(info_name, args, parent, **extra)  # type: ignore[misc, no-any-return]

    def invoke(self, ctx: click.Context) -> Any:
        with reported(self.interrupted):
            return super().invoke(ctx)  # type: ignore[misc]


class Command(Reported, click.Command):
    """A netspec command, with its own message for Ctrl-C (`interrupted`)."""

    def __init__(self, *args: Any, interrupted: str = "interrupted", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.interrupted = interrupted


def command(name: str, interrupted: str = "interrupted") -> Callable[[F], Command]:
    """`@click.command(name)` with netspec's error handling (Command)."""
    return click.command(name, cls=Command, interrupted=interrupted)


class FiniteFloat(click.FloatRange):
    """A float above `minimum`, and finite: `inf` and `nan` pass a plain range (nan
    compares false with everything), and train a network to NaN."""

    def __init__(self, minimum: float) -> None:
        super().__init__(min=minimum, min_open=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def batch_range() -> click.IntRange:
    return click.IntRange(1, MAX_BATCH)


def network_option(f: F) -> F:
    return click.option("--network", "-n", help="which network of the spec (when it has several)")(
        f
    )


def sets_option(help: str) -> Callable[[F], F]:
    """`--set NAME=VALUE`, repeatable; `help` says what the command lets it override."""
    return click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help=help)


def seed_option(help: str) -> Callable[[F], F]:
    return click.option("--seed", type=click.IntRange(0, MAX_SEED), help=help)


def provider_option(f: F) -> F:
    return click.option(
        "--provider",
        type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]),
        default="auto",
        show_default=True,
        help="ONNX Runtime execution provider; auto: TensorRT, then CUDA, then the CPU",
    )(f)


def threads_option(f: F) -> F:
    """`--threads N`: the CPU threads to compute with (netspec.threads chooses without it)."""
    return click.option(
        "--threads",
        type=click.IntRange(1, 1024),
        help="CPU threads to compute with (default: the cores free of other work now, or "
        "NETSPEC_THREADS)",
    )(f)


def limit_options(f: F) -> F:
    """One `--max-...` flag per field of `Limits`, defaulting to its value."""
    from netspec.limits import Limits

    defaults = Limits()
    for field in reversed(list(Limits.model_fields)):
        flag = "--" + field.replace("_", "-")
        f = click.option(
            flag,
            type=click.IntRange(min=1),
            default=getattr(defaults, field),
            show_default=True,
            help=f"limit: {field.replace('_', ' ')}",
        )(f)
    return f
