"""resolve: read a file and the files it `use`s, and index every definition by name.

Names are global to a compilation. A name defined twice, a name that shadows
an operation, a `use` that leaves the spec's directory or loops back: refused here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from netspec.diagnostics import Collector, Diagnostic, Sources, Span, SpecError, display_path
from netspec.limits import Limits
from netspec.ops import REGISTRY
from netspec.syntax import ast
from netspec.syntax.parser import parse

Definition = ast.Const | ast.Table | ast.Kernel | ast.Block | ast.Network


@dataclass
class Program:
    """Every definition of a compilation, with the text of every file read."""

    consts: dict[str, ast.Const] = field(default_factory=dict)
    tables: dict[str, ast.Table] = field(default_factory=dict)
    kernels: dict[str, ast.Kernel] = field(default_factory=dict)
    blocks: dict[str, ast.Block] = field(default_factory=dict)
    networks: dict[str, ast.Network] = field(default_factory=dict)
    trains: dict[str, ast.Train] = field(default_factory=dict)
    sources: Sources = field(default_factory=Sources)
    main_file: str = "<string>"
    main_text: str = ""

    def definition(self, name: str) -> Definition | None:
        for table in (self.consts, self.tables, self.kernels, self.blocks, self.networks):
            if name in table:
                return table[name]
        return None


def _read(path: Path, span: Span | None, limits: Limits) -> str:
    where = span or Span(str(path), 1, 1, 1, 1)
    try:
        size = path.stat().st_size
    except OSError as e:
        message = f"cannot read '{display_path(path)}': {e.strerror}"
        raise SpecError([Diagnostic("E101", message, where)]) from None
    if size > limits.max_file_bytes:
        raise SpecError(
            [
                Diagnostic(
                    "E102",
                    f"'{display_path(path)}' is {size:,} bytes; the limit is "
                    f"{limits.max_file_bytes:,}",
                    where,
                    hint="raise it with --max-file-bytes if it is meant to be this large",
                )
            ]
        )
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(
            [Diagnostic("E101", f"cannot read '{display_path(path)}' as UTF-8 text: {e}", where)]
        ) from None


class _Loader:
    def __init__(self, root_dir: Path | None, limits: Limits, allow_outside: bool) -> None:
        self.root_dir = root_dir
        self.limits = limits
        self.allow_outside = allow_outside
        self.program = Program()
        self.errors = Collector()
        self.loaded: set[Path] = set()

    def load_text(self, text: str, file: str, stack: tuple[Path, ...]) -> None:
        self.program.sources.texts[file] = text
        module = parse(text, file)
        for item in module.items:
            if isinstance(item, ast.Use):
                self._use(item, Path(file).parent, stack)
            else:
                self._define(item)

    def _use(self, item: ast.Use, base: Path, stack: tuple[Path, ...]) -> None:
        target = (base / item.path).resolve()
        if target in stack:
            chain = " -> ".join(p.name for p in (*stack, target))
            self.errors.error("E104", f"'use' cycle: {chain}", item.span)
            return
        if (
            self.root_dir is not None
            and not self.allow_outside
            and not target.is_relative_to(self.root_dir)
        ):
            self.errors.error(
                "E103",
                f"'{item.path}' is outside the spec's directory ({display_path(self.root_dir)})",
                item.span,
                hint="pass --allow-outside to use files from elsewhere",
            )
            return
        if target in self.loaded:
            return
        self.loaded.add(target)
        text = _read(target, item.span, self.limits)
        self.load_text(text, str(target), (*stack, target))

    def _define(self, item: ast.Item) -> None:
        if isinstance(item, ast.Train):
            self._unique(self.program.trains, item.network, item, "a train section for")
            return
        assert not isinstance(item, ast.Use)
        if item.name in REGISTRY:
            self.errors.error(
                "E105",
                f"'{item.name}' is the name of an operation",
                item.span,
                hint="choose another name",
            )
            return
        first = self.program.definition(item.name)
        if first is not None:
            self.errors.add(
                Diagnostic("E106", f"'{item.name}' is defined twice", item.span).with_note(
                    "first defined here", first.span
                )
            )
            return
        if isinstance(item, ast.Const):
            self.program.consts[item.name] = item
        elif isinstance(item, ast.Table):
            self._table(item)
        elif isinstance(item, ast.Kernel):
            self._kernel(item)
        elif isinstance(item, ast.Block):
            self.program.blocks[item.name] = item
        else:
            self.program.networks[item.name] = item

    def _unique(self, table: dict[str, ast.Train], key: str, item: ast.Train, what: str) -> None:
        if key in table:
            self.errors.add(
                Diagnostic("E106", f"{what} '{key}' is given twice", item.span).with_note(
                    "first given here", table[key].span
                )
            )
        table[key] = item

    def _table(self, item: ast.Table) -> None:
        if any(v != int(v) or v < 0 for row in item.matrix.rows for v in row):
            self.errors.error(
                "E107",
                f"table '{item.name}' must list feature-map numbers (whole numbers from 0)",
                item.matrix.span,
            )
        self.program.tables[item.name] = item

    def _kernel(self, item: ast.Kernel) -> None:
        widths = {len(r) for r in item.matrix.rows}
        if len(widths) != 1:
            self.errors.error(
                "E108",
                f"kernel '{item.name}' is not rectangular: its rows have {sorted(widths)} entries",
                item.matrix.span,
            )
        self.program.kernels[item.name] = item


def resolve(text: str, file: str, limits: Limits, allow_outside: bool = False) -> Program:
    """Parse `text` (read from `file`) and everything it uses into one Program."""
    path = Path(file).resolve() if not file.startswith("<") else None
    loader = _Loader(path.parent if path else Path.cwd().resolve(), limits, allow_outside)
    if path is not None:
        loader.loaded.add(path)
    loader.load_text(text, file, (path,) if path else ())
    loader.errors.raise_if_any()
    loader.program.main_file = file
    loader.program.main_text = text
    return loader.program


def read_spec(path: Path, limits: Limits) -> str:
    return _read(path, None, limits)
