"""A benchmark's own section of docs/benchmarks.md, replaced in place (the other
benchmarks own the rest of the file), or appended when the file has none yet."""

from __future__ import annotations

from pathlib import Path


def replace_section(doc: Path, title: str, section: str) -> None:
    """Put `section` (which starts with its `title` line) where the section of that title
    is, up to the next `## ` heading; read right before writing, written atomically."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    start = text.find(title)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(title))
        text = text[:start] + section + ("" if end < 0 else text[end + 1 :])
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(doc)
