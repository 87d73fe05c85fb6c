"""The spec a run was trained on: every file it read, kept in the run, and one digest of them.

A run keeps its spec in ``spec/``: the main file under its own name, each file it `use`s at
the same place relative to it. The digest covers every file (a single-file spec's digest
is the SHA-256 of its text, as runs have always recorded), and the per-file SHA-256s let a
mismatch name the file that changed.

>>> files = SpecFiles("net.net", {"net.net": 'use "lib.net"', "lib.net": "block b() {}"})
>>> files.digest() == sha256('use "lib.net"')
False
>>> SpecFiles("net.net", {"net.net": "x"}).digest() == sha256("x")
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from netspec.compiler import Compiled
from netspec.errors import RunError
from netspec.fileio import read_capped, write_text
from netspec.limits import Limits

SPEC_DIR = "spec"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SpecFiles:
    """The main file's name and the text of every file, keyed by POSIX path relative to it."""

    main: str
    texts: Mapping[str, str]

    def hashes(self) -> dict[str, str]:
        return {name: sha256(text) for name, text in sorted(self.texts.items())}

    def digest(self) -> str:
        if set(self.texts) == {self.main}:
            return sha256(self.texts[self.main])
        summary = json.dumps({"main": self.main, "files": self.hashes()}, sort_keys=True)
        return sha256(summary)


def spec_files(compiled: Compiled) -> SpecFiles:
    """Every file ``compiled`` was read from, relative to its main file's directory."""
    program = compiled.program
    main = Path(program.main_file)
    if program.main_file.startswith("<"):  # compiled from a string: the text is all there is
        return SpecFiles("spec.net", {"spec.net": program.main_text})
    base = main.resolve().parent
    texts = {main.name: program.main_text}
    for file, text in program.sources.texts.items():
        path = Path(file).resolve()
        if file == program.main_file or path == main.resolve():
            continue
        if not path.is_relative_to(base):
            raise RunError(
                f"{file}: outside the spec's directory ({base}), so a run cannot keep it; "
                "keep the files a spec uses beside it"
            )
        texts[path.relative_to(base).as_posix()] = text
    return SpecFiles(main.name, texts)


def write_spec(run: Path, files: SpecFiles) -> None:
    """Copy every file of the spec into ``run/spec/``."""
    for name, text in files.texts.items():
        write_text(run / SPEC_DIR / name, text)


def check_name(name: object, what: str) -> PurePosixPath:
    """A stored file name that stays inside ``spec/``: relative, without ``..``."""
    if not isinstance(name, str) or not name:
        raise RunError(f"{what}: expected a file name, found {json.dumps(name)}")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or name.startswith("~"):
        raise RunError(f"{what}: '{name}' leaves the run's spec/ directory")
    return path


def run_file(run: Path, name: str, what: str) -> Path:
    """``run/spec/name`` if it is a regular file really inside the run (no link leads out)."""
    root = (run / SPEC_DIR).resolve()
    path = run / SPEC_DIR / check_name(name, what)
    if path.is_symlink() or not path.resolve().is_relative_to(root) or not path.is_file():
        raise RunError(f"{path}: missing or not a regular file inside the run")
    return path


def read_kept(run: Path, main: str, hashes: Mapping[str, object]) -> SpecFiles:
    """The files the run's settings list, each checked against its recorded SHA-256."""
    texts: dict[str, str] = {}
    for name, want in sorted(hashes.items()):
        path = run_file(run, name, "settings.json sources")
        text = read_text(path)
        if sha256(text) != want:
            raise RunError(
                f"{path}: changed since the run was made (SHA-256 {sha256(text)[:12]}, "
                f"recorded {str(want)[:12]})",
                hint="restore the file, or train a new run from the edited spec",
            )
        texts[name] = text
    if main not in texts:
        raise RunError(f"settings.json: the main file '{main}' is not among the run's sources")
    return SpecFiles(main, texts)


def read_text(path: Path) -> str:
    """A kept spec file's text: a regular file of UTF-8 within the spec size limit."""
    try:
        return read_capped(path, Limits().max_file_bytes).decode("utf-8")
    except UnicodeDecodeError:
        raise RunError(f"{path}: not UTF-8 text; the run's spec is damaged") from None
    except ValueError as e:
        raise RunError(f"{path}: {e}, over the spec size limit") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read ({e.strerror or e})") from None


def changed(recorded: Mapping[str, object], now: Mapping[str, str]) -> list[str]:
    """``name: changed|added|removed`` for each file whose hash differs between the two."""
    out = []
    for name in sorted(set(recorded) | set(now)):
        if name not in now:
            out.append(f"{name}: no longer used")
        elif name not in recorded:
            out.append(f"{name}: newly used")
        elif recorded[name] != now[name]:
            out.append(f"{name}: changed")
    return out
