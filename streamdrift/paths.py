"""Field paths into the user's JSON events: parsed once at configuration time, compiled to getters.

Syntax
------
A path is a chain of steps into the decoded JSON document:

* ``name`` or ``.name`` after a step: an object key made of letters, digits and ``_ - $ @ :``
  (e.g. ``meta.model.name``);
* ``[3]`` (or ``[-1]``): a list index;
* ``["key.with.dots"]`` or ``['any key']``: an object key with any characters; ``\\"`` and ``\\\\``
  escape a quote or a backslash inside it.

A getter returns ``None`` when any step is absent, of the wrong container type or out of range, so
a JSON ``null`` and a missing field look the same to the decoder, which treats both as *missing*.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import repeat
from typing import Any

__all__ = [
    "Extractor",
    "Getter",
    "Step",
    "compile_extractor",
    "compile_path",
    "format_path",
    "parse_path",
]

Step = str | int
Getter = Callable[[Any], Any]

_NAME = re.compile(r"[A-Za-z0-9_\-$@:]+")
_INDEX = re.compile(r"\[(-?\d+)\]")
_QUOTED = re.compile(r"""\[(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\]""")
_UNESCAPE = re.compile(r"\\(.)")


def parse_path(path: str) -> tuple[Step, ...]:
    """Split ``path`` into its steps; raise ``ValueError`` saying where the syntax is wrong.

    >>> parse_path('payload.features[0].value')
    ('payload', 'features', 0, 'value')
    >>> parse_path('["key.with.dots"].x[-1]')
    ('key.with.dots', 'x', -1)
    >>> parse_path('a..b')
    Traceback (most recent call last):
    ...
    ValueError: invalid path 'a..b' at character 2: expected a key name, [index] or ["quoted key"]
    """
    if not isinstance(path, str) or not path:
        raise ValueError("a path must be a non-empty string such as 'a.b[0].c'")
    steps: list[Step] = []
    pos, end = 0, len(path)
    while pos < end:
        if steps and path[pos] == ".":
            pos += 1
        match = _NAME.match(path, pos)
        if match and (not steps or path[pos - 1] == "."):
            steps.append(match.group())
        elif (match := _INDEX.match(path, pos)) is not None:
            steps.append(int(match.group(1)))
        elif (match := _QUOTED.match(path, pos)) is not None:
            raw = match.group(1) if match.group(1) is not None else match.group(2)
            steps.append(_UNESCAPE.sub(r"\1", raw))
        else:
            raise ValueError(
                f"invalid path {path!r} at character {pos}: "
                'expected a key name, [index] or ["quoted key"]'
            )
        pos = match.end()
        if pos < end and path[pos] not in ".[":
            raise ValueError(f"invalid path {path!r} at character {pos}: expected '.' or '['")
    if path.endswith("."):
        raise ValueError(f"invalid path {path!r}: it ends with '.'")
    return tuple(steps)


def format_path(steps: tuple[Step, ...]) -> str:
    """Inverse of :func:`parse_path` (canonical spelling).

    >>> format_path(('a', 0, 'key.with.dots'))
    'a[0]["key.with.dots"]'
    """
    out: list[str] = []
    for step in steps:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif _NAME.fullmatch(step):
            out.append(f".{step}" if out else step)
        else:
            escaped = step.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)


def compile_path(path: str | tuple[Step, ...]) -> Getter:
    """Return a fast function ``doc -> value or None`` for ``path``.

    The getter is generated once as straight-line code (one subscript per step inside a single
    ``try``), because it runs for every event and every mapped field.

    >>> get = compile_path('payload.features[1].value')
    >>> get({'payload': {'features': [{'value': 1}, {'value': 2.5}]}})
    2.5
    >>> get({'payload': {'features': []}}) is None
    True
    >>> compile_path('a[0]')({'a': 'text'}) is None   # strings are not lists
    True
    """
    steps = parse_path(path) if isinstance(path, str) else path
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]

        def get_key(doc: Any) -> Any:
            try:
                return doc.get(key)
            except AttributeError:
                return None

        return get_key
    lines = ["def getter(doc):", "    try:"]
    namespace: dict[str, Any] = {"_list": list, "_dict": dict}
    for i, step in enumerate(steps):
        namespace[f"k{i}"] = step
        # Only the container type that makes sense is indexed: a str step into a list raises
        # TypeError anyway, but an int step into a str would silently return one character.
        guard = "_list" if isinstance(step, int) else "_dict"
        lines.append(f"        if doc.__class__ is not {guard}: return None")
        lines.append(f"        doc = doc[k{i}]")
    lines += ["    except (KeyError, IndexError):", "        return None", "    return doc"]
    exec("\n".join(lines), namespace)
    getter: Getter = namespace["getter"]
    getter.__doc__ = f"Value at {format_path(steps)!r}, or None."
    return getter


Extractor = Callable[[list[Any]], Iterator[Any]]


def compile_extractor(path: str) -> Extractor:
    """Return ``docs -> iterator of the value at path in each doc`` (``docs`` must be dicts).

    A one-key path becomes ``map(dict.get, docs, repeat(key))``, which runs without a Python
    frame per document; longer paths map their compiled getter.

    >>> list(compile_extractor("a")([{"a": 1}, {}]))
    [1, None]
    >>> list(compile_extractor("a.b[0]")([{"a": {"b": [2]}}, {"a": 3}]))
    [2, None]
    """
    steps = parse_path(path)
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]
        return lambda docs: map(dict.get, docs, repeat(key))
    getter = compile_path(steps)
    return lambda docs: map(getter, docs)
