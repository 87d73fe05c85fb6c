"""Opening a run directory as data that may have come from anywhere: everything is read from
inside it (`check_links` refuses a link out of it before anything is read), every stored
field is checked, and weights are loaded only for the spec they were trained on. `netspec
eval`, `train --resume` and `export RUN` open runs here, and `show` and `serve` through
netspec.probe: `read_run` is the one check of a run and its kept spec files.

`open_target` is the one opener of what a command that builds a network is given (a spec,
a run directory, or a weights file in a run: `netspec export`, `netspec convert`);
`read_settings` is the one reader of a run's settings.json. An ONNX file is opened on ONNX
Runtime by netspec.runtime.session.open_model, without torch.

A run made before runs kept ``spec/`` (its spec as one ``spec.net`` beside settings.json)
is compiled from that file, with the run directory as the only place it may `use` from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from netspec.compiler import Compiled, compile
from netspec.data import default_cache_dir
from netspec.diagnostics import Diagnostic, SpecError
from netspec.errors import RunError, UsageError
from netspec.fileio import PathLike
from netspec.limits import Limits
from netspec.lower import to_torch
from netspec.lower.weights import load_weights
from netspec.train.run import read_json, weights_meta
from netspec.train.setup import RESERVED, check_overrides
from netspec.train.sources import (
    SPEC_DIR,
    SpecFiles,
    changed,
    read_kept,
    read_text,
    run_file,
    spec_files,
)
from netspec.trainspec import TrainConfig

LEGACY_SPEC = "spec.net"
SETTINGS = "settings.json"
# What netspec reads from a run (`check_links`); eval's own pictures (eval/) are only written.
READ = (SETTINGS, SPEC_DIR, LEGACY_SPEC, "weights", "state", "samples", "metrics.csv", "model.onnx")
MAX_RUN_ENTRIES = 100_000  # files `check_links` looks at: a run holds dozens
INF = (float("inf"), float("-inf"))  # JSON's Infinity: no override is (nor NaN)
MAX_THREADS = 1024  # a stored thread count beyond this is damage, not a machine
OUTSIDE = "E103"  # the code of a `use` that leaves the spec's directory (passes.load)
WEIGHTS = ("best.safetensors", "last.safetensors")  # what export and eval load, in this order


@dataclass(frozen=True)
class KeptRun:
    """A run directory whose settings and kept spec files passed every check."""

    dir: Path
    settings: dict[str, Any]
    files: SpecFiles
    main: Path  # the file to compile: spec/NAME, or a legacy run's spec.net

    @property
    def network(self) -> str | None:
        network: str | None = self.settings.get("network")
        return network

    @property
    def overrides(self) -> dict[str, Any]:
        overrides: dict[str, Any] = self.settings.get("overrides") or {}
        return overrides

    def config(self) -> TrainConfig:
        """The run's training settings, as stored; a RunError naming the first bad field."""
        where = f"{self.dir / SETTINGS}: bad 'train' settings"
        if "train" not in self.settings:
            raise RunError(f"{where}: missing")
        try:
            config = TrainConfig.model_validate(self.settings["train"])
        except ValidationError as e:
            error = e.errors(include_url=False)[0]
            field = ".".join(str(part) for part in error["loc"]) or "train"
            raise RunError(f"{where}: {field}: {error['msg']}") from None
        if not -(2**63) <= config.seed < 2**63:  # what torch's generator takes
            raise RunError(f"{where}: seed: {config.seed:.3g}: expected at most 63 bits")
        return config


def read_settings(run: PathLike) -> dict[str, Any]:
    """The settings.json of the run directory ``run``, read (bounded) and checked field by
    field (`check_settings`); a RunError where there is no such run or they are damaged."""
    directory = Path(run)
    if not directory.is_dir():
        raise RunError(f"{directory}: no such run directory")
    check_links(directory)
    settings_file = directory / SETTINGS
    if not settings_file.is_file():
        empty = not any(directory.iterdir())
        raise RunError(
            f"{directory}: not a netspec run (no settings.json)",
            hint="an empty directory is taken over by the next `netspec train` of that name"
            if empty
            else None,
        )
    return check_settings(read_json(settings_file), settings_file)


def check_links(run: Path) -> None:
    """Refuse a run in which what netspec reads (`READ`: settings.json, spec/ and every file
    under it, weights/, state/, samples/...) is or lies under a symbolic link that leads out
    of the run directory (`spec -> /etc`): a RunError that names the link and nothing of
    what it leads to, checked before anything in the run is read. A link that stays inside
    the run is followed."""
    root = _resolved(run)
    pending = [run / name for name in READ]
    seen: set[Path] = set()
    looked = 0
    while pending:
        path = pending.pop()
        looked += 1
        if looked > MAX_RUN_ENTRIES:
            raise RunError(f"{run}: more than {MAX_RUN_ENTRIES:,} files; not a netspec run")
        real = _resolved(path)
        if path.is_symlink() and (real is None or root is None or not real.is_relative_to(root)):
            raise RunError(
                f"{path}: not a regular file inside the run (a symbolic link that leads out "
                "of the run directory)",
                hint="a run is read only from inside itself: put the file in the run, "
                "not a link to it",
            )
        if real is not None and path.is_dir() and real not in seen:  # each folder once
            seen.add(real)
            room = max(0, MAX_RUN_ENTRIES + 1 - looked - len(pending))
            try:
                pending += islice(path.iterdir(), room)
            except OSError as e:
                raise RunError(f"{path}: cannot read ({e.strerror or e})") from None


def _resolved(path: Path) -> Path | None:
    """Where ``path`` leads, every link followed; None for a loop or an unreadable link."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None


def read_run(run: PathLike, *, need_settings: bool = True) -> KeptRun:
    """Check ``run`` is a run directory and its kept spec files are the ones it recorded
    (without ``need_settings``, a run made before settings.json is read from its spec.net)."""
    directory = Path(run)
    legacy = directory.is_dir() and not (directory / SETTINGS).is_file()
    if legacy and not need_settings and (directory / LEGACY_SPEC).is_file():
        check_links(directory)
        return _legacy(directory, {})
    settings = read_settings(directory)
    settings_file = directory / SETTINGS
    if "sources" not in settings:
        return _legacy(directory, settings)
    KeptRun(directory, settings, SpecFiles("", {}), directory).config()  # a valid 'train'?
    files = read_kept(directory, settings["main"], settings["sources"])
    if files.digest() != settings["spec_sha256"]:
        raise RunError(f"{settings_file}: spec_sha256 does not match the kept spec files")
    return KeptRun(
        directory, settings, files, run_file(directory, files.main, "settings.json main")
    )


def _legacy(directory: Path, settings: dict[str, Any]) -> KeptRun:
    main = directory / LEGACY_SPEC
    if main.is_symlink() or not main.is_file():
        raise RunError(f"{main}: missing or not a regular file inside the run")
    text = read_text(main)
    return KeptRun(directory, settings, SpecFiles(LEGACY_SPEC, {LEGACY_SPEC: text}), main)


_FIELDS: dict[str, tuple[type, ...]] = {
    "network": (str, type(None)),
    "overrides": (dict,),
    "data": (str, type(None)),
    "limit": (int, type(None)),
    "train": (dict,),
    "spec_sha256": (str,),
    "main": (str,),
    "sources": (dict,),
    "runtime": (dict,),
}


def check_settings(settings: dict[str, Any], path: Path) -> dict[str, Any]:
    """``settings`` if every field netspec reads has the type it writes; else a RunError."""
    for key, types in _FIELDS.items():
        if key in settings and not isinstance(settings[key], types):
            raise RunError(f"{path}: bad field '{key}': {json.dumps(settings[key])[:80]}")
    if "sources" in settings and "main" not in settings:
        raise RunError(f"{path}: 'sources' without 'main'")
    limit = settings.get("limit")
    if isinstance(limit, bool) or (isinstance(limit, int) and limit < 1):
        raise RunError(f"{path}: bad field 'limit': {limit}")
    overrides = settings.get("overrides") or {}
    for key, value in overrides.items():
        if not key.isidentifier() or key in RESERVED:
            raise RunError(f"{path}: bad override name {json.dumps(key)[:80]}")
        if not isinstance(value, bool | int | float | str) or value != value or value in INF:
            raise RunError(f"{path}: bad override '{key}': {json.dumps(value)[:80]}")
    for name, digest in (settings.get("sources") or {}).items():
        if not isinstance(digest, str):
            raise RunError(f"{path}: bad SHA-256 for '{name}' in 'sources'")
    threads = (settings.get("runtime") or {}).get("threads")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS
    ):
        raise RunError(f"{path}: bad field 'runtime.threads': {json.dumps(threads)}")
    return settings


def compile_run(
    kept: KeptRun,
    network: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
) -> Compiled:
    """Compile the run's kept spec, from inside the run only (no `use` may leave it);
    ``network``, ``overrides`` (on top of the run's) and ``limits`` as on the command line."""
    merged = {**kept.overrides, **(overrides or {})}
    try:
        check_overrides(merged)
        compiled = compile(
            kept.main,
            network if network is not None else kept.network,
            allow_outside=False,
            limits=limits,
            **merged,
        )
    except SpecError as e:  # no `--allow-outside` here: say what a run's spec may use
        raise SpecError([_inside_only(d) for d in e.diagnostics]) from None
    except UsageError as e:
        if _from_command_line(e, kept, network, overrides or {}):
            raise
        raise RunError(
            f"{kept.dir / 'settings.json'}: {e.message}",
            hint="the run's stored network or overrides are damaged",
        ) from None
    now = spec_files(compiled)
    if now.hashes() != kept.files.hashes() and kept.files.main != LEGACY_SPEC:
        raise RunError(
            f"{kept.dir}: the kept spec reads other files than it recorded: "
            + ", ".join(changed(kept.files.hashes(), now.hashes()))
        )
    return _measured(compiled, kept)


def _measured(compiled: Compiled, kept: KeptRun) -> Compiled:
    """The compiled run with the normalization its making measured (`normalize auto`), as
    its settings recorded it: what it trains, evaluates, exports and shows with."""
    train = compiled.train
    if train is None or not train.normalize.auto or "train" not in kept.settings:
        return compiled
    stored = kept.config().normalize
    if not stored.auto:
        return compiled
    return replace(compiled, train=train.model_copy(update={"normalize": stored}))


def _inside_only(d: Diagnostic) -> Diagnostic:
    """``d`` with E103's "pass --allow-outside" (a flag no run command has) replaced."""
    if d.code != OUTSIDE:
        return d
    return replace(d, hint="a run's spec may `use` only the files kept inside the run")


def _from_command_line(
    e: UsageError, kept: KeptRun, network: str | None, overrides: Mapping[str, Any]
) -> bool:
    """Whether ``e`` is about what the command line gave, not about what the run stored
    (a stored value is damage in the run, exit 1, not a mistake in a flag)."""
    given = [k for k, v in overrides.items() if k not in kept.overrides or kept.overrides[k] != v]
    stored = [k for k in kept.overrides if k not in given]
    if any(flag in e.message for k in stored for flag in (f"--set {k}=", f"--set {k}:", f"--{k} ")):
        return False
    if network in (None, kept.network) and repr(kept.network) in e.message:
        return False
    return bool(given) or network not in (None, kept.network)


def check_weights(path: PathLike, files: SpecFiles) -> None:
    """Refuse weights whose metadata records another spec than ``files``, naming what changed."""
    meta = weights_meta(path)
    recorded = meta["spec_sha256"]
    if recorded is None or recorded == files.digest():
        return  # weights not written by netspec training record no spec
    what = changed(meta["sources"], files.hashes()) if meta["sources"] else []
    raise RunError(
        f"{path}: trained on another spec than the run's ("
        + ("; ".join(what) if what else f"SHA-256 {recorded[:12]}, now {files.digest()[:12]}")
        + ")",
        hint="the weights belong to another spec (another run's weights, or a spec edited "
        "since): use them with the run they were trained in",
    )


def stored_data(kept: KeptRun, given: PathLike | None) -> Path | None:
    """The data to use with a run: ``given`` (``--data``), else the dataset the run was
    trained on when that is the spec's own (None) or lies in netspec's dataset cache. Any
    other path the run stores is not followed (a run directory is data from anywhere):
    a UsageError whose hint shows the stored path, to pass as --data if it is trusted."""
    if given is not None:
        return Path(given)
    stored = kept.settings.get("data")
    if not stored:
        return None
    path = Path(stored)
    cache = default_cache_dir().parent.resolve()
    if path.is_absolute() and path.resolve().is_relative_to(cache):
        return path
    raise UsageError(
        f"{kept.dir}: the run was trained on data outside netspec's dataset cache; "
        "a path stored in a run is not followed: pass --data",
        hint=f"--data {json.dumps(stored)[:200]}",
    )


def open_run(
    source: PathLike,
    network: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
) -> tuple[Compiled, Path | None]:
    """The run's compiled network and the weights to load, after every check: settings, kept
    files, and the weights' record of their spec. ``source`` is a run directory (weights:
    best, else last, else None) or a ``.safetensors`` file in one (``RUN/weights/X``).
    ``network``, ``overrides`` (on top of the run's) and ``limits`` as `--network`, `--set`
    and the `--max-...` flags give them."""
    path = Path(source)
    weights: Path | None = None
    if path.suffix == ".safetensors" and not path.is_dir():
        weights, path = path, path.parent.parent if path.parent.name == "weights" else path.parent
        if not weights.is_file():
            raise RunError(f"{weights}: no such weights file")
    try:
        kept = read_run(path, need_settings=False)
    except RunError as e:
        if weights is None:
            raise
        raise RunError(
            f"{weights}: not in a netspec run ({e.message})",
            hint="weights are exported with their run: RUN/weights/NAME.safetensors, "
            "or the run directory itself",
        ) from None
    compiled = compile_run(kept, network, overrides, limits)
    if weights is None:
        weights = next(
            (w for w in (kept.dir / "weights" / n for n in WEIGHTS) if w.is_file()), None
        )
    if weights is not None:
        check_weights(weights, kept.files)
    return compiled, weights


@dataclass(frozen=True)
class Opened:
    """What `open_target` opened: the network compiled, and the weights to load into it
    (None for a spec, and for a run that has none yet)."""

    compiled: Compiled
    weights: Path | None

    def module(self, log: Callable[[str], None]) -> nn.Module | None:
        """The network with the weights loaded (their file said in ``log``); None without
        weights, for the exporters to initialize afresh."""
        if self.weights is None:
            return None
        module = to_torch(self.compiled)
        load_weights(self.weights, module)
        log(f"weights: {self.weights}")
        return module


def open_target(
    source: PathLike,
    network: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
) -> Opened:
    """A spec file, or a run directory or a ``.safetensors`` file in one (`open_run`, with
    every check), opened with ``network``, ``overrides`` and ``limits`` as `--network`,
    `--set` and the `--max-...` flags give them."""
    path = Path(source)
    if path.is_dir() or path.suffix == ".safetensors":
        return Opened(*open_run(path, network, overrides, limits))
    if not path.is_file():
        raise UsageError(f"{path}: no such file or directory")
    return Opened(compile(path, network, limits=limits, **(overrides or {})), None)


__all__ = [
    "READ",
    "SETTINGS",
    "SPEC_DIR",
    "KeptRun",
    "Opened",
    "check_links",
    "check_weights",
    "compile_run",
    "open_run",
    "open_target",
    "read_run",
    "read_settings",
    "stored_data",
]
