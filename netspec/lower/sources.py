"""netspec's own definitions as source text, with all they need, for `emit_python` to carry.

An emitted network that uses a layer PyTorch lacks (`TableConv2d`, `EuclideanRBF`, ...) or
asks for `init=` stays a standalone file by carrying that code. `Sources.need(obj)` copies a
class or function of netspec's from its module's source as written (docstring and shape
comments too, in ASCII), after the module-level definitions it refers to (helpers such as `_pair`,
constants, type aliases), each once, in the order first needed; the imports they use are
collected, and a name imported from another netspec module is followed there. The
definitions are found in the module's syntax tree, not in a list kept by hand, so a layer
added to `netspec.lower.layers` later is carried with no change here. What cannot be carried
(a definition nested in a function, two different definitions under one name) raises
`ValueError`; tests/test_emit_standalone.py emits every layer netspec has, so such a layer
fails a test, not a user.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Import:
    """`import module [as alias]` (no `name`) or `from module import name [as alias]`."""

    module: str
    name: str | None = None
    alias: str | None = None

    @property
    def bound(self) -> str:
        """The name the statement binds in the importing module."""
        return self.alias or self.name or self.module.split(".")[0]

    def target(self) -> object:
        """What the bound name refers to."""
        module = importlib.import_module(self.module)
        if self.name is not None:
            return getattr(module, self.name)
        return module if self.alias else importlib.import_module(self.bound)


@dataclass(frozen=True)
class _Parsed:
    """A module's lines, and what binds each of its top-level names."""

    lines: list[str]
    defs: dict[str, ast.stmt]
    imports: dict[str, Import]


def _bound(stmt: ast.stmt) -> list[str]:
    """The top-level names a definition or assignment binds."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [stmt.name]
    targets = stmt.targets if isinstance(stmt, ast.Assign) else []
    if isinstance(stmt, ast.AnnAssign):
        targets = [stmt.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _imports(stmt: ast.Import | ast.ImportFrom, package: str | None) -> Iterator[Import]:
    if isinstance(stmt, ast.Import):
        yield from (Import(a.name, None, a.asname) for a in stmt.names)
        return
    module = stmt.module or ""
    if stmt.level:
        module = importlib.util.resolve_name("." * stmt.level + module, package)
    if module != "__future__":
        yield from (Import(module, a.name, a.asname) for a in stmt.names)


@functools.cache
def _parsed(module_name: str) -> _Parsed:
    module = importlib.import_module(module_name)
    text = inspect.getsource(module)
    defs: dict[str, ast.stmt] = {}
    imports: dict[str, Import] = {}
    for stmt in ast.parse(text).body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            imports.update((i.bound, i) for i in _imports(stmt, module.__package__))
        else:
            defs.update((name, stmt) for name in _bound(stmt))
    return _Parsed(text.splitlines(), defs, imports)


def _references(stmt: ast.stmt) -> list[str]:
    """Every name `stmt` mentions, in reading order, once each."""
    names = sorted(
        ((n.lineno, n.col_offset, n.id) for n in ast.walk(stmt) if isinstance(n, ast.Name)),
    )
    return list(dict.fromkeys(name for _, _, name in names))


# Typographic characters of docstrings and comments, in the ASCII a person would type.
_TYPED = {
    "\N{PLUS-MINUS SIGN}": "+/-",
    "\N{MULTIPLICATION SIGN}": "x",
    "\N{MIDDLE DOT}": "*",
    "\N{MINUS SIGN}": "-",
    "\N{EN DASH}": "-",
    "\N{EM DASH}": "--",
    "\N{HORIZONTAL ELLIPSIS}": "...",
    "\N{RIGHTWARDS ARROW}": "->",
    "\N{LESS-THAN OR EQUAL TO}": "<=",
    "\N{GREATER-THAN OR EQUAL TO}": ">=",
    "\N{LEFT SINGLE QUOTATION MARK}": "'",
    "\N{RIGHT SINGLE QUOTATION MARK}": "'",
    "\N{LEFT DOUBLE QUOTATION MARK}": '"',
    "\N{RIGHT DOUBLE QUOTATION MARK}": '"',
}


def _escaped(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"\\N{{{name}}}" if name else ch.encode("unicode_escape").decode("ascii")


def _ascii(text: str) -> str:
    """Source as plain ASCII, which any stdout can take: typographic characters in their
    typed spelling (`+/-1` for plus-minus one), any other escaped (`\\N{NAME}`), which a
    string reads back as the character itself."""
    return "".join(ch if ch.isascii() else _TYPED.get(ch) or _escaped(ch) for ch in text)


def _text(parsed: _Parsed, stmt: ast.stmt) -> str:
    """`stmt`'s source lines, with its decorators and the comment lines right above it, in
    ASCII."""
    decorators = getattr(stmt, "decorator_list", [])
    start = min([stmt.lineno, *(d.lineno for d in decorators)]) - 1
    while start > 0 and parsed.lines[start - 1].lstrip().startswith("#"):
        start -= 1
    end = stmt.end_lineno or stmt.lineno
    return _ascii("\n".join(parsed.lines[start:end]))


def _is_netspec(module: str) -> bool:
    return module == "netspec" or module.startswith("netspec.")


def of_netspec(obj: Any) -> bool:
    """Whether `obj` is defined in netspec (so a file that uses it must carry it)."""
    return _is_netspec(str(getattr(obj, "__module__", "")))


@dataclass
class Sources:
    """The definitions and imports carried so far, in the order they must be written."""

    blocks: list[tuple[str, str]] = field(default_factory=list)  # (module, source text)
    imports: dict[str, Import] = field(default_factory=dict)  # bound name -> import
    _defined: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (module, line)

    def need(self, obj: Any) -> str:
        """Carry `obj`, a class or function of netspec's; the name the file calls it by."""
        module, name = str(obj.__module__), str(obj.__qualname__)
        if not _is_netspec(module) or "." in name or "<" in name:
            raise ValueError(f"cannot carry {obj!r}: not a module-level definition of netspec's")
        self._carry(module, name)
        return name

    def add_import(self, imp: Import) -> None:
        """Record an import the file needs; two different objects under one name are refused."""
        have = self.imports.get(imp.bound)
        if have is not None and have.target() is not imp.target():
            raise ValueError(f"'{imp.bound}' is imported as two different things")
        if imp.bound in self._defined:
            raise ValueError(f"'{imp.bound}' is both imported and defined")
        self.imports.setdefault(imp.bound, imp)

    def names(self) -> set[str]:
        """Every top-level name the carried code binds (the emitter must not reuse them)."""
        return set(self.imports) | set(self._defined)

    def _carry(self, module: str, name: str) -> None:
        parsed = _parsed(module)
        imp = parsed.imports.get(name)
        if imp is not None:
            if not _is_netspec(imp.module):
                self.add_import(imp)
            elif imp.name is None or imp.bound != imp.name:
                raise ValueError(f"cannot carry '{name}': {module} imports it as a module or alias")
            else:
                self._carry(imp.module, imp.name)
            return
        stmt = parsed.defs.get(name)
        if stmt is None:
            return  # bound some other way (under an `if`): the standalone test finds it unbound
        own = _bound(stmt)
        if all(self._defined.get(n) == (module, stmt.lineno) for n in own):
            return
        for n in own:
            self._claim(n, (module, stmt.lineno))
        for ref in _references(stmt):
            if ref not in own and (ref in parsed.defs or ref in parsed.imports):
                self._carry(module, ref)
        self.blocks.append((module, _text(parsed, stmt)))

    def _claim(self, name: str, where: tuple[str, int]) -> None:
        have = self._defined.get(name)
        if (have is not None and have != where) or name in self.imports:
            raise ValueError(f"two different definitions are named '{name}' ({have}, {where})")
        self._defined[name] = where


def _import_order(name: str) -> tuple[int, str]:
    """isort's order by type within one `from` line: CONSTANTS, Classes, functions."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name


def _section(imports: Iterable[Import]) -> list[str]:
    imports = list(imports)
    plain = sorted(
        (i.module, f"import {i.module}" + (f" as {i.alias}" if i.alias else ""))
        for i in imports
        if i.name is None
    )
    froms: dict[str, list[str]] = {}
    for i in imports:
        if i.name is not None:
            froms.setdefault(i.module, []).append(i.name + (f" as {i.alias}" if i.alias else ""))
    lines = [line for _, line in plain]
    for module in sorted(froms):
        names = sorted(set(froms[module]), key=_import_order)
        lines.append(f"from {module} import {', '.join(names)}")
    return lines


def import_lines(imports: Iterable[Import]) -> list[str]:
    """The import statements, standard library first, then the rest, as isort writes them."""
    imports = list(imports)
    stdlib = [i for i in imports if i.module.split(".")[0] in sys.stdlib_module_names]
    rest = [i for i in imports if i not in stdlib]
    parts = [_section(group) for group in (stdlib, rest) if group]
    return [line for part in parts for line in (*part, "")][:-1]
