"""Training state (optimizer, scheduler, scaler) as one safetensors file: the tensors as
tensors, everything else as JSON in the file's metadata. Never a pickle.

The JSON keeps Python's shapes exactly: a dict is ``{"dict": [[key, value], ...]}`` (so
integer keys stay integers), a tuple ``{"tuple": [...]}``, a list ``{"list": [...]}``, a
tensor ``{"tensor": NAME}``; numbers, strings, booleans and null stand for themselves.

>>> import torch
>>> tensors, meta = encode({"state": {0: {"step": torch.tensor(2.0)}}, "betas": (0.9, 0.99)})
>>> sorted(tensors), decode(tensors, meta)["betas"]
(['state.0.step'], (0.9, 0.99))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from netspec.errors import RunError
from netspec.fileio import PathLike, write_atomic

META_KEY = "netspec_state"
SCALARS = (bool, int, float, str)


def encode(value: Any) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors by name, the JSON that holds everything else and names the tensors)."""
    tensors: dict[str, torch.Tensor] = {}
    return tensors, json.dumps(_encode(value, "", tensors))


def _encode(value: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[name] = value.detach().cpu().clone().contiguous()
        return {"tensor": name}
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, SCALARS):
                raise TypeError(f"{name}: a key of type {type(key).__name__}")
            items.append([key, _encode(item, f"{name}.{key}" if name else str(key), tensors)])
        return {"dict": items}
    if isinstance(value, list | tuple):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(value)]}
    if value is None or isinstance(value, SCALARS):
        return value
    raise TypeError(f"{name}: a value of type {type(value).__name__}")


def decode(tensors: dict[str, torch.Tensor], meta: str) -> Any:
    """The value `encode` was given; ValueError for anything it would not have written."""
    return _decode(json.loads(meta), tensors)


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if value is None or isinstance(value, SCALARS):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"unexpected {type(value).__name__} in the state's JSON")
    ((kind, body),) = value.items()
    if kind == "tensor" and isinstance(body, str) and body in tensors:
        return tensors[body]
    if kind in ("list", "tuple") and isinstance(body, list):
        items = [_decode(v, tensors) for v in body]
        return items if kind == "list" else tuple(items)
    if kind == "dict" and isinstance(body, list):
        pairs = [p for p in body if isinstance(p, list) and len(p) == 2]
        if len(pairs) != len(body) or not all(isinstance(k, SCALARS) for k, _ in pairs):
            raise ValueError("a malformed dict in the state's JSON")
        return {k: _decode(v, tensors) for k, v in pairs}
    raise ValueError(f"unexpected {kind!r} entry in the state's JSON")


def save_state(path: PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` in one atomic rename."""
    tensors, meta = encode(state)

    def write(tmp: Path) -> None:
        try:
            save_file(tensors, str(tmp), metadata={META_KEY: meta})
        except SafetensorError as e:  # a full disk, say: the writer says so as an OSError
            raise OSError(str(e)) from None

    write_atomic(path, write)


def load_state(path: PathLike) -> dict[str, Any]:
    """The state `save_state` wrote to ``path``, or a RunError saying why it cannot be read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        if meta is None:
            raise ValueError(f"no {META_KEY} metadata")
        state = decode(tensors, meta)
    except (OSError, SafetensorError, ValueError, RecursionError) as e:
        raise RunError(f"{path}: not a netspec training state ({e})") from None
    if not isinstance(state, dict):
        raise RunError(f"{path}: not a netspec training state (no mapping at the top)")
    return state
