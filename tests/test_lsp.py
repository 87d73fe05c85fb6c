"""`netspec lsp`, end to end as an editor uses it: `python -m netspec lsp` in a subprocess,
spoken to over its stdin and stdout by tests/lsp_client.py."""

from __future__ import annotations

import doctest
import importlib
import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsp_client import LspClient, LspError  # tests/, beside this file

from netspec.compiler import analyze
from netspec.fmt import format_text

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SERVER = [sys.executable, "-m", "netspec", "lsp"]
Json = Any


@pytest.fixture(scope="module")
def client() -> Iterator[LspClient]:
    with LspClient(SERVER, cwd=ROOT) as c:
        c.initialize(ROOT)
        yield c
        assert c.alive(), c.stderr.decode(errors="replace")


def opened(client: LspClient, path: Path, text: str | None = None) -> tuple[str, str]:
    """Open `path` (with `text`, else what it holds) and wait for its diagnostics."""
    text = path.read_text(encoding="utf-8") if text is None else text
    uri = path.as_uri()
    start = client.received
    client.open(uri, text)
    client.diagnostics(uri, 1, start=start)
    return uri, text


def position(text: str, needle: str, nth: int = 0, offset: int = 0) -> tuple[int, int]:
    """The 0-based line and character of the `nth` `needle` in `text`, plus `offset`."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    at += offset
    line = text.count("\n", 0, at)
    return line, at - (text.rfind("\n", 0, at) + 1)


def edit(text: str, edits: list[Json]) -> str:
    """`text` with the protocol's text edits applied (ASCII text: characters are units)."""
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)

    def offset(p: Json) -> int:
        return offsets[p["line"]] + p["character"]

    for e in sorted(edits, key=lambda e: offset(e["range"]["start"]), reverse=True):
        start, end = offset(e["range"]["start"]), offset(e["range"]["end"])
        text = text[:start] + e["newText"] + text[end:]
    return text


def labels(items: Json) -> list[str]:
    items = items["items"] if isinstance(items, dict) else items
    return [i["label"] for i in items]


def compile_json(spec: Path) -> Json:
    done = subprocess.run(
        [sys.executable, "-m", "netspec", "compile", str(spec), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(done.stdout)


# ---- the server starts, and says what it does ------------------------------------------


def test_initialize_names_every_feature(client: LspClient) -> None:
    with LspClient(SERVER, cwd=ROOT) as fresh:
        caps = fresh.initialize(ROOT)["capabilities"]
        assert fresh.close() == 0
    assert caps["textDocumentSync"]["change"] == 1  # full text on each change
    for feature in ("hover", "definition", "references", "documentSymbol", "documentFormatting"):
        assert caps[f"{feature}Provider"] is True, feature
    assert caps["renameProvider"] == {"prepareProvider": True}
    assert "|" in caps["completionProvider"]["triggerCharacters"]
    assert "function" in caps["semanticTokensProvider"]["legend"]["tokenTypes"]
    assert caps["inlayHintProvider"] is not False


def test_the_server_imports_no_torch() -> None:
    code = "import sys, netspec.cli.lsp, netspec.lsp.server; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_stdin_closing_ends_the_server() -> None:
    process = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0


# ---- diagnostics and inlay shapes ---------------------------------------------------------


def inlay(client: LspClient, uri: str, text: str) -> dict[int, str]:
    end = {"line": text.count("\n") + 1, "character": 0}
    hints = client.request(
        "textDocument/inlayHint",
        {"textDocument": {"uri": uri}, "range": {"start": {"line": 0, "character": 0}, "end": end}},
    )
    return {h["position"]["line"] + 1: h["label"].removeprefix("→ ") for h in hints}


def test_lenet_has_no_errors_and_its_inlay_shapes_are_compiles(client: LspClient) -> None:
    spec = SPECS / "lenet.net"
    uri, text = spec.as_uri(), spec.read_text(encoding="utf-8")
    start = client.received
    client.open(uri, text)
    assert [d for d in client.diagnostics(uri, 1, start=start) if d["severity"] == 1] == []
    last_on_line: dict[int, str] = {}
    for layer in compile_json(spec)["layers"]:  # in graph order: the last one of a line wins
        last_on_line[layer["line"]] = "x".join(map(str, layer["shape"]))
    assert inlay(client, uri, text) == last_on_line
    hint_line, _ = position(text, "maxpool 2x2")
    assert last_on_line[hint_line + 1] == "6x14x14"


def test_resnet50_network_lines_show_each_stage_output(client: LspClient) -> None:
    spec = SPECS / "resnet50.net"
    uri, text = opened(client, spec)
    hints = inlay(client, uri, text)
    layers = compile_json(spec)["layers"]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        line, _ = position(text, f"{stage} = ")
        last = [la for la in layers if la["name"].startswith(f"{stage}.")][-1]
        assert hints[line + 1] == "x".join(map(str, last["shape"])), stage
    assert hints[position(text, "dense 1000")[0] + 1] == "1000"
    # a line of the block, made 16 times, lists its distinct shapes
    assert hints[position(text, "conv c*4")[0] + 1].startswith("256x56x56 | 512x28x28 | ")


def test_a_typo_is_an_E202_at_its_line_and_column(client: LspClient) -> None:
    path = SPECS / "lenet.net"
    uri, text = opened(client, path)
    typo = text.replace("maxpool", "maxpol", 1)
    start, began = client.received, time.monotonic()
    client.change(uri, typo, 2)
    diagnostics = client.diagnostics(uri, 2, timeout=10, start=start)
    assert time.monotonic() - began < 10
    (diag,) = diagnostics
    line, character = position(typo, "maxpol")
    assert diag["code"] == "E202" and diag["severity"] == 1 and diag["source"] == "netspec"
    assert diag["range"] == {
        "start": {"line": line, "character": character},
        "end": {"line": line, "character": character + len("maxpol")},
    }
    assert "unknown operation 'maxpol'" in diag["message"]
    assert "did you mean 'maxpool'?" in diag["message"]  # the hint, as the CLI prints it
    start = client.received
    client.change(uri, text, 3)
    assert client.diagnostics(uri, 3, start=start) == []


def test_notes_with_a_place_are_related_information(client: LspClient, tmp_path: Path) -> None:
    text = "const k = 1\nconst k = 2\nnetwork n(x: 1x8x8) {\n    conv k 3x3\n}\n"
    path = tmp_path / "twice.net"
    uri = path.as_uri()
    start = client.received
    client.open(uri, text)
    (diag,) = client.diagnostics(uri, 1, start=start)
    assert diag["code"] == "E106" and diag["range"]["start"]["line"] == 1
    (related,) = diag["relatedInformation"]
    assert related["message"] == "first defined here"
    assert related["location"]["uri"] == uri and related["location"]["range"]["start"]["line"] == 0


def test_a_spec_with_a_mistake_still_has_its_names(client: LspClient, tmp_path: Path) -> None:
    text = (SPECS / "resnet50.net").read_text(encoding="utf-8").replace("maxpool", "maxpol")
    uri, _ = opened(client, tmp_path / "mistake.net", text)
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [s["name"] for s in symbols] == ["bottleneck", "resnet50"]
    at = client.at(uri, *position(text, "bottleneck(512"))
    found = client.request("textDocument/definition", at)
    assert found["range"]["start"]["line"] == position(text, "block bottleneck")[0]
    value = hover_text(client, uri, *position(text, "conv 64 7x7"))
    assert "Convolution" in value and "output:" not in value  # the network did not expand


# ---- hover, definition, references ---------------------------------------------------------


def hover_text(client: LspClient, uri: str, line: int, character: int) -> str:
    result = client.request("textDocument/hover", client.at(uri, line, character))
    assert result is not None
    return str(result["contents"]["value"])


def test_hover_on_a_conv_gives_its_shape_receptive_field_and_parameters(
    client: LspClient,
) -> None:
    uri, text = opened(client, SPECS / "lenet.net")
    value = hover_text(client, uri, *position(text, "conv 6 5x5"))
    assert "**conv1**" in value and "output: `6x28x28`" in value
    assert "receptive field: size 5, jump 1, start 0.5" in value
    assert "parameters: 156" in value and "multiply-adds: 117,600" in value
    assert "Convolution: a local receptive field" in value  # the operation's documentation


def test_hover_on_a_block_call_sums_what_it_expands_to(client: LspClient) -> None:
    uri, text = opened(client, SPECS / "resnet50.net")
    value = hover_text(client, uri, *position(text, "bottleneck(64)"))
    assert "**layer1** · 33 layers" in value and "output: `256x56x56`" in value
    assert "parameters: 215,808" in value
    inner = hover_text(client, uri, *position(text, "conv c*4"))
    assert "made 16 times" in inner and "| layer1.0.conv3 | 256x56x56 |" in inner
    first = hover_text(client, uri, *position(text, "conv c 1x1"))  # 12 rows, then a count
    assert "| layer3.4.conv1 | 256x14x14 |" in first and "… and 4 more" in first
    assert "layer4.2.conv1" not in first


def test_definition_of_a_block_use_is_the_block(client: LspClient) -> None:
    uri, text = opened(client, SPECS / "resnet50.net")
    result = client.request(
        "textDocument/definition", client.at(uri, *position(text, "bottleneck(128"))
    )
    line, character = position(text, "bottleneck(c, stride=1)")
    assert result["uri"] == uri
    assert result["range"]["start"] == {"line": line, "character": character}
    assert result["range"]["end"] == {"line": line, "character": character + len("bottleneck")}


def test_references_of_a_block_and_of_a_tensor(client: LspClient) -> None:
    uri, text = opened(client, SPECS / "resnet50.net")
    params = client.at(uri, *position(text, "bottleneck(64)"))
    found = client.request(
        "textDocument/references", {**params, "context": {"includeDeclaration": True}}
    )
    assert len(found) == text.count("bottleneck(") == 8
    uses = client.request(
        "textDocument/references", {**params, "context": {"includeDeclaration": False}}
    )
    assert len(uses) == 7 and {r["uri"] for r in uses} == {uri}
    body = client.request(
        "textDocument/references",
        {
            **client.at(uri, *position(text, "add(body", offset=5)),
            "context": {"includeDeclaration": True},
        },
    )
    assert sorted(r["range"]["start"]["line"] for r in body) == [
        position(text, "body =")[0],
        position(text, "add(body")[0],
    ]


# ---- completion -----------------------------------------------------------------------------


def complete(client: LspClient, uri: str, line: int, character: int) -> list[str]:
    return labels(client.request("textDocument/completion", client.at(uri, line, character)))


def test_completion_after_a_pipe_lists_operations_blocks_and_tensors(
    client: LspClient, tmp_path: Path
) -> None:
    path = tmp_path / "typing.net"
    text = (SPECS / "resnet50.net").read_text(encoding="utf-8")
    uri, _ = opened(client, path, text)
    line, _ = position(text, "avgpool global")
    lines = text.split("\n")
    lines[line] = "    avgpool global | "  # being typed: it does not parse
    typing = "\n".join(lines)
    start = client.received
    client.change(uri, typing, 2)
    assert client.diagnostics(uri, 2, start=start)[0]["code"].startswith("E0")
    found = complete(client, uri, line, len(lines[line]))
    assert {"maxpool", "conv", "dense", "bottleneck", "layer4", "repeat"} <= set(found)
    assert "downsample" not in found  # a name of the block is not in the network's scope


def test_completion_of_argument_names_and_values(client: LspClient, tmp_path: Path) -> None:
    text = "table c3 = [0 1; 1 2]\nnetwork n(x: 2x8x8) {\n    conv 6 5x5 pad=\n}\n"
    uri, _ = opened(client, tmp_path / "args.net", text)
    line, character = position(text, "pad=", offset=4)
    assert set(complete(client, uri, line, character)) == {"same", "valid"}
    lines = text.split("\n")
    for written, expected in (
        ("    conv 6 5x5 bias=", {"true", "false"}),
        ("    conv 6 5x5 connect=", {"c3"}),
        ("    upsample 2 mode=", {"nearest", "bilinear"}),
        ("    pad 1 mode=", {"constant", "reflect", "replicate"}),
    ):
        lines[2] = written
        start = client.received
        version = len(written)
        client.change(uri, "\n".join(lines), version)
        client.diagnostics(uri, version, start=start)
        assert set(complete(client, uri, 2, len(written))) == expected, written
    lines[2] = "    conv 6 5x5 stride=2 "
    client.change(uri, "\n".join(lines), 100)
    names = complete(client, uri, 2, len(lines[2]))
    assert {"pad=", "dilation=", "groups=", "init=", "tie="} <= set(names)
    assert "stride=" not in names


# ---- formatting, symbols, tokens, rename ------------------------------------------------------


def test_formatting_returns_the_formatters_text(client: LspClient, tmp_path: Path) -> None:
    messy = "network n(x:1x8x8){\n  conv 4 3x3|relu   # two\n dense 10 # out\n}"
    uri, _ = opened(client, tmp_path / "messy.net", messy)
    params = {"textDocument": {"uri": uri}, "options": {"tabSize": 4, "insertSpaces": True}}
    edits = client.request("textDocument/formatting", params)
    assert edits and edit(messy, edits) == format_text(messy)
    start = client.received
    client.change(uri, format_text(messy), 2)
    client.diagnostics(uri, 2, start=start)
    assert client.request("textDocument/formatting", params) == []
    client.change(uri, "network n(x: 1x8x8) {\n    conv 4 3x3 |\n}\n", 3)
    assert client.request("textDocument/formatting", params) == []  # does not parse


def test_document_symbols_outline_networks_blocks_and_training(client: LspClient) -> None:
    uri, _ = opened(client, SPECS / "resnet50.net")
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [(s["name"], s["kind"]) for s in symbols] == [("bottleneck", 12), ("resnet50", 5)]
    block, network = symbols
    assert [c["name"] for c in block["children"]] == [
        *("c", "stride", "body", "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample")
    ]
    assert {"layer1", "layer4", "conv1", "image"} <= {c["name"] for c in network["children"]}
    uri, _ = opened(client, SPECS / "lenet.net")
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [s["name"] for s in symbols] == ["lenet", "train lenet on mnist"]


def test_semantic_tokens_tell_operations_blocks_and_tensors_apart(client: LspClient) -> None:
    uri, text = opened(client, SPECS / "resnet50.net")
    data = client.request("textDocument/semanticTokens/full", {"textDocument": {"uri": uri}})[
        "data"
    ]
    assert data and len(data) % 5 == 0
    lines, row, col, found = text.split("\n"), 0, 0, {}
    for i in range(0, len(data), 5):
        d_line, d_col, length, kind = data[i : i + 4]
        row, col = row + d_line, (col + d_col if d_line == 0 else d_col)
        found.setdefault(lines[row][col : col + length], set()).add(kind)
    types_ = ["keyword", "function", "class", "variable", "parameter", "property", "number"]
    assert found["block"] == {types_.index("keyword")}
    assert found["bottleneck"] == {types_.index("class")}
    assert found["conv"] == {types_.index("function")}
    assert found["stride"] == {types_.index("parameter"), types_.index("property")}
    assert found["body"] == {types_.index("variable")}
    assert found["7x7"] == {types_.index("number")}


def test_rename_a_tensor_and_a_block(client: LspClient, tmp_path: Path) -> None:
    text = (SPECS / "resnet50.net").read_text(encoding="utf-8")
    uri, _ = opened(client, tmp_path / "rename.net", text)
    at = client.at(uri, *position(text, "add(body", offset=5))
    prepared = client.request("textDocument/prepareRename", at)
    assert prepared["end"]["character"] - prepared["start"]["character"] == len("body")
    result = client.request("textDocument/rename", {**at, "newName": "trunk"})
    renamed = edit(text, result["changes"][uri])
    assert len(result["changes"][uri]) == 2 and not re.search(r"\bbody\b", renamed)
    at = client.at(uri, *position(text, "bottleneck(256"))
    result = client.request("textDocument/rename", {**at, "newName": "bneck"})
    renamed = edit(renamed, result["changes"][uri])
    assert renamed.count("bneck(") == 8 and "bottleneck(" not in renamed
    before, after = analyze(text), analyze(renamed)
    assert after.errors == [] and after.inferred is not None and before.inferred is not None
    assert after.inferred.totals == before.inferred.totals
    with pytest.raises(LspError, match="already defined"):
        client.request("textDocument/rename", {**at, "newName": "resnet50"})
    with pytest.raises(LspError, match="operation"):
        client.request("textDocument/rename", {**at, "newName": "conv"})


# ---- `use` of an open, unsaved document ----------------------------------------------------------


def test_use_of_an_unsaved_open_document(client: LspClient, tmp_path: Path) -> None:
    lib, main = tmp_path / "lib.net", tmp_path / "main.net"
    assert not lib.exists()
    lib_text = "block unit(c) {\n    conv c 3x3 pad=same | relu\n}\n"
    main_text = 'use "lib.net"\nnetwork n(x: 1x8x8) {\n    unit(4) | dense 2\n}\n'
    start = client.received
    client.open(lib.as_uri(), lib_text)
    client.open(main.as_uri(), main_text)
    assert client.diagnostics(main.as_uri(), 1, start=start) == []
    value = hover_text(client, main.as_uri(), *position(main_text, "unit(4)"))
    assert "output: `4x8x8`" in value
    where = client.request(
        "textDocument/definition", client.at(main.as_uri(), *position(main_text, "unit("))
    )
    assert where["uri"] == lib.as_uri() and where["range"]["start"]["line"] == 0
    used = client.request(
        "textDocument/definition", client.at(main.as_uri(), *position(main_text, "lib.net"))
    )
    assert used["uri"] == lib.as_uri()
    # an edit of the library, unsaved, is checked in the spec that uses it at once
    start = client.received
    client.change(lib.as_uri(), lib_text.replace("conv c", "conv c c"), 2)
    (diag,) = client.diagnostics(main.as_uri(), 1, start=start)
    assert diag["range"]["start"]["line"] == 0 and "lib.net:2:" in diag["message"]


# ---- robustness -------------------------------------------------------------------------------


def test_a_failing_handler_is_logged_and_answers_empty(client: LspClient, tmp_path: Path) -> None:
    gone = (tmp_path / "never-opened.net").as_uri()
    start = client.received
    assert client.request("textDocument/hover", client.at(gone, 0, 0)) is None
    assert client.request("textDocument/documentSymbol", {"textDocument": {"uri": gone}}) == []
    log = client.wait_for("window/logMessage", lambda p: "failed" in p["message"], start=start)
    assert log["type"] == 1 and "Traceback" in log["message"]
    uri, text = opened(client, SPECS / "lenet.net")
    assert "**conv1**" in hover_text(client, uri, *position(text, "conv 6"))


JUNK = ["}", "{", "|", "x", "0", "-3", "99999999999", "1e400", "conv", "dense", "repeat", "=",
        ",", "(", ")", "[", "]", ";", "@", '"', "#", "1x", "foo", "add", "concat {"]  # fmt: skip
TOKEN = re.compile(r"\w+|[^\w\s]")


def mutate(text: str, rng: random.Random) -> str:
    """One mutation, as /work/shared/hooks/fuzz_specs.py makes them."""
    spans = [m.span() for m in TOKEN.finditer(text)]
    s, e = spans[rng.randrange(len(spans))]
    lines = text.splitlines(True)
    k = rng.randrange(7)
    if k == 0:
        return text[:s] + text[e:]
    if k == 1:
        return text[:s] + rng.choice(JUNK) + text[e:]
    if k == 2:
        return text[:s] + rng.choice(JUNK) + " " + text[s:]
    if k == 3:
        i = rng.randrange(len(lines))
        return "".join([*lines[:i], lines[i], *lines[i:]])
    if k == 4:
        return text[: rng.randrange(len(text))]
    if k == 5:
        i, d = rng.randrange(len(lines)), rng.randrange(1, 400)
        lines[i] = "concat {\n" * d + lines[i].rstrip("\n") + "\n" + "}\n" * d
        return "".join(lines)
    scale = rng.choice([0, 1000, 10**5, 10**12])
    return re.sub(
        r"\b\d+\b", lambda m: str(int(m[0]) * scale) if rng.random() < 0.2 else m[0], text
    )


@pytest.mark.slow
def test_an_editing_run_over_mutated_specs_never_stops_the_server(tmp_path: Path) -> None:
    rng = random.Random(25)
    texts = [p.read_text(encoding="utf-8") for p in sorted(SPECS.glob("*.net"))]
    uri = (tmp_path / "fuzz.net").as_uri()
    answered, deadline = 0, time.monotonic() + 25
    with LspClient(SERVER, cwd=ROOT) as c:
        c.initialize(ROOT)
        c.open(uri, texts[0])
        version = 1
        while time.monotonic() < deadline:
            text = mutate(rng.choice(texts), rng)
            version += 1
            c.change(uri, text, version)
            lines = text.split("\n")
            for method in (
                "textDocument/hover",
                "textDocument/completion",
                "textDocument/definition",
            ):
                line = rng.randrange(len(lines))
                c.request(method, c.at(uri, line, rng.randrange(len(lines[line]) + 2)), timeout=20)
                answered += 1
            for method in ("textDocument/semanticTokens/full", "textDocument/documentSymbol"):
                c.request(method, {"textDocument": {"uri": uri}}, timeout=20)
                answered += 1
            c.diagnostics(uri, version, timeout=20)
        assert c.alive() and answered > 20
        failures = [
            n["message"] for n in c.notifications("window/logMessage") if "failed" in n["message"]
        ]
        assert failures == []
        assert c.close() == 0


def test_doctests() -> None:
    for name in ("positions", "index", "opinfo", "tokens", "inlay", "completion"):
        module = importlib.import_module(f"netspec.lsp.{name}")
        assert doctest.testmod(module).failed == 0, name
