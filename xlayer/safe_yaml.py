"""Reading user files without trusting them: bounded YAML and text.

Every file a user names (a case, a sweep, an SCD spec, a JSON of module times) goes through
:func:`read_text` (exists, is a file, is not huge, is UTF-8 text) and YAML through
:func:`load_yaml`, which refuses before building anything:

- a document deeper than :data:`MAX_DEPTH` levels (checked on the parser's event stream, which
  is iterative, so a 100 000-deep ``[[[[...`` cannot exhaust the Python stack);
- a document whose aliases would expand to more than :data:`MAX_NODES` nodes (a "billion
  laughs" bomb is a few hundred bytes that expand to 10^9 nodes; the expanded size is counted
  on the composed graph with memoisation, so counting is linear in the file);
- a mapping that repeats a key (PyYAML silently keeps the last one; a case that says
  ``tp: 8`` twice is a mistake worth naming).

Every refusal is an :class:`~xlayer.errors.InputError` naming the file (and line).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from xlayer.errors import InputError

MAX_BYTES = 16 * 2 ** 20   # a case is a few kB; a sweep a few hundred
MAX_DEPTH = 64             # nesting levels (a case needs 3)
MAX_NODES = 1_000_000      # nodes after alias expansion

# libyaml (C) when PyYAML was built with it: the same documents, ~10x faster; its event parser is
# iterative too, and composition runs only after the depth check
_Loader = getattr(yaml, "CSafeLoader", None) if getattr(yaml, "__with_libyaml__", False) else None
_Loader = _Loader or yaml.SafeLoader


def check_path(path: str | Path | None, field: str, what: str = "a file") -> Path:
    """``path`` as a Path naming an existing regular file, else an InputError on ``field``."""
    if path is None or str(path).strip() == "":
        raise InputError(field, "" if path is None else str(path), f"empty; give {what}")
    p = Path(path)
    try:
        if not p.exists():
            raise InputError(field, str(path), f"file not found; give {what}")
        if p.is_dir():
            raise InputError(field, str(path), f"is a folder; give {what}")
        if not p.is_file():
            raise InputError(field, str(path), f"not a regular file; give {what}")
        size = p.stat().st_size
    except OSError as exc:  # name too long, permission denied, ...
        raise InputError(field, str(path), f"cannot be read ({exc.strerror or exc}); give {what}") from None
    if size > MAX_BYTES:
        raise InputError(field, str(path), f"{size:,} bytes is too large for {what} (at most {MAX_BYTES:,})")
    return p


def read_text(path: str | Path | None, field: str, what: str = "a file") -> str:
    """The text of a user file: exists, regular, at most MAX_BYTES, UTF-8 without NUL bytes."""
    p = check_path(path, field, what)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(field, str(path), f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise InputError(field, str(path), f"too large for {what} (at most {MAX_BYTES:,} bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(p.name, f"byte {raw[exc.start]:#04x} at offset {exc.start}",
                         f"not UTF-8 text; {what} must be UTF-8 text") from None
    if "\x00" in text:
        raise InputError(p.name, f"NUL byte at offset {text.index(chr(0))}", f"binary data; {what} must be text")
    return text


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f"line {mark.line + 1}" if mark is not None else "?"


def _check_depth(text: str, name: str) -> None:
    depth = 0
    for ev in yaml.parse(text, Loader=_Loader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = ev.start_mark.line + 1 if ev.start_mark is not None else "?"
                raise InputError(name, f"line {line}", f"nested more than {MAX_DEPTH} levels deep; a case "
                                                        "needs three")
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_graph(root: yaml.Node, name: str, loader: Any) -> None:
    """Expanded size (aliases counted in full) and duplicate keys, iteratively."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            if isinstance(node, yaml.SequenceNode):
                n = 1 + sum(size[id(c)] for c in node.value)
            elif isinstance(node, yaml.MappingNode):
                n = 1 + sum(size[id(k)] + size[id(v)] for k, v in node.value)
            else:
                n = 1
            if n > MAX_NODES:
                line = node.start_mark.line + 1 if node.start_mark is not None else "?"
                raise InputError(name, f"line {line}", f"its aliases expand to more than {MAX_NODES:,} values "
                                                        "(a YAML bomb?); write the values out")
            size[nid] = n
            continue
        if nid in size:
            continue
        if nid in on_path:  # a recursive alias (&a [*a]) — PyYAML cannot build it either
            raise InputError(name, "recursive alias", "an alias cannot refer to a node that contains it")
        if isinstance(node, yaml.ScalarNode):
            size[nid] = 1
            continue
        on_path.add(nid)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    try:
                        key = loader.construct_object(k, deep=False)
                        hash(key)
                    except Exception:  # noqa: BLE001 - reported by the real construction below
                        key = (k.tag, k.value)
                    line = k.start_mark.line + 1 if k.start_mark is not None else "?"
                    if key in seen:
                        raise InputError(name, k.value, f"duplicate key (lines {seen[key]} and {line}); give "
                                                        "each key once")
                    seen[key] = line
                stack.append((k, False))
                stack.append((v, False))
        else:
            for c in node.value:
                stack.append((c, False))


def loads(text: str, name: str = "YAML") -> Any:
    """Parse one YAML document with the limits above (``name`` names it in errors)."""
    try:
        _check_depth(text, name)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_graph(node, name, loader)
            loader.constructed_objects = {}
            loader.recursive_objects = {}
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(name, _where(exc), f"malformed YAML ({problem})") from None
    except RecursionError:
        raise InputError(name, "?", f"nested too deeply (at most {MAX_DEPTH} levels)") from None


def load_yaml(path: str | Path | None, field: str, what: str = "a YAML file") -> Any:
    """Read and parse a user YAML file (see the module docstring for the limits)."""
    text = read_text(path, field, what)
    return loads(text, Path(str(path)).name)


def load_json(path: str | Path | None, field: str, what: str = "a JSON file") -> Any:
    """Read and parse a user JSON file (same size/encoding checks; depth bounded by json's parser)."""
    import json
    text = read_text(path, field, what)
    name = Path(str(path)).name
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(name, f"line {exc.lineno}", f"malformed JSON ({exc.msg})") from None
    except RecursionError:
        raise InputError(name, "?", "nested too deeply") from None


DATA_DIR = Path(__file__).resolve().parent / "data"
# libyaml's C parser where PyYAML was built with it (the same documents, ~10x faster: the
# catalog and constants are read on every command); trusted package files only
_TRUSTED_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def trusted_load(text: str) -> Any:
    """Parse a YAML file shipped in the package (trusted: no hostile-input limits)."""
    return yaml.load(text, Loader=_TRUSTED_LOADER)


def package_data(name: str) -> dict[str, Any]:
    """A constants file shipped in ``xlayer/data`` (trusted: part of the package), without its
    ``source`` key (every such file states where its numbers come from there)."""
    data = trusted_load((DATA_DIR / name).read_text())
    data.pop("source", None)
    return data


@lru_cache(maxsize=None)
def package_constants(cls: type, name: str) -> Any:
    """The frozen record ``cls`` built from the constants file ``name`` of ``xlayer/data``
    (read once per process)."""
    return cls(**package_data(name))
