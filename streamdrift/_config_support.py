"""Reading the YAML file, applying ``STREAMDRIFT_*`` overrides and wording validation errors."""

from __future__ import annotations

import copy
import difflib
import types
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from streamdrift.errors import ConfigError

PREFIX = "STREAMDRIFT_"
# Variables with our prefix that are not config overrides: the config path for entry points,
# and the dev-stack scripts' directories (scripts/_common.sh).
NOT_OVERRIDES = frozenset({"STREAMDRIFT_CONFIG", "STREAMDRIFT_RUN_DIR", "STREAMDRIFT_CACHE_DIR"})
_MISSING = object()
Loc = tuple[str | int, ...]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _mapping_no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        if isinstance(key, Hashable):
            seen.add(key)
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping_no_duplicates,
)


def read_yaml(path: Path) -> Any:
    """Parse the YAML file at ``path``; every failure is a one-line :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found; pass the path of a YAML config "
            "(see examples/ and deploy/streamdrift.yaml)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None


# -- walking the model classes -------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def annotation_at(root: type[BaseModel], loc: Loc) -> Any:
    """The (unwrapped) annotation at ``loc`` below ``root``, or ``_MISSING`` if no such key."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if _is_model(current):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return _MISSING
            current = field.annotation
        elif get_origin(current) is list and isinstance(part, int):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return _MISSING
    return _unwrap(current)


def _is_optional(root: type[BaseModel], loc: Loc) -> bool:
    parent = annotation_at(root, loc[:-1])
    if not _is_model(parent) or not isinstance(loc[-1], str):
        return False
    field = parent.model_fields.get(loc[-1])
    return field is not None and type(None) in get_args(field.annotation)


# -- environment overrides -----------------------------------------------------------------------


def _env_value(raw: str, root: type[BaseModel], loc: Loc) -> Any:
    annotation = annotation_at(root, loc)
    if _is_optional(root, loc) and raw.strip() in ("", "null", "~"):
        return None
    if annotation in (str, SecretStr):
        return raw
    if get_origin(annotation) is list and _unwrap(get_args(annotation)[0]) is str:
        return [part.strip() for part in raw.split(",") if part.strip()]
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_env(
    data: dict[str, Any], env: Mapping[str, str], root: type[BaseModel]
) -> tuple[dict[str, Any], dict[Loc, str]]:
    """Return a copy of ``data`` with the ``STREAMDRIFT_*`` overrides of ``env`` set, and for
    each overridden key path the variable that set it (so errors can name it)."""
    data = copy.deepcopy(data)
    origins: dict[Loc, str] = {}
    problems: list[str] = []
    for name in sorted(env):
        if not name.startswith(PREFIX) or name in NOT_OVERRIDES:
            continue
        parts = name[len(PREFIX) :].lower().split("__")
        if not all(parts):
            problems.append(f"{name}: expected STREAMDRIFT_<SECTION>__<KEY> (empty part)")
            continue
        loc: Loc = tuple(parts)
        raw = env[name]
        last = parts[-1]
        if annotation_at(root, loc) is _MISSING and last.endswith("_file") and len(last) > 5:
            target = (*loc[:-1], last[: -len("_file")])
            if annotation_at(root, target) is not _MISSING:
                if name[: -len("_FILE")] in env:
                    problems.append(f"{name}: set either it or {name[:-5]}, not both")
                    continue
                try:
                    raw = Path(raw).read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    problems.append(f"{name}: cannot read the file {raw!r} ({exc.strerror})")
                    continue
                loc = target
        value = _env_value(raw, root, loc)
        node: Any = data
        for part in loc[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(f"{name}: {part!r} is not a mapping; set it in the file instead")
                break
            node = child
        else:
            node[loc[-1]] = value
            origins[loc] = name
    if problems:
        raise ConfigError("invalid environment overrides:\n  " + "\n  ".join(problems))
    return data, origins


# -- wording validation errors -------------------------------------------------------------------


def format_loc(loc: Loc) -> str:
    """``('kafka', 'input_topics', 0)`` -> ``kafka.input_topics[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "(top level)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _explain(error: Mapping[str, Any], root: type[BaseModel], loc: Loc) -> str:
    kind = error["type"]
    if kind == "missing":
        parent = annotation_at(root, loc[:-1])
        field = parent.model_fields.get(loc[-1]) if _is_model(parent) else None
        about = f" ({field.description})" if field is not None and field.description else ""
        return f"required key is missing{about}"
    if kind == "extra_forbidden":
        parent = annotation_at(root, loc[:-1])
        allowed = list(parent.model_fields) if _is_model(parent) else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}allowed: {', '.join(allowed)}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind == "model_type":
        message = "expected a mapping of keys"
    message = f"{message[:1].lower()}{message[1:]}"
    given = error.get("input")
    if isinstance(given, dict):  # a whole section: may hold secrets, and is too long anyway
        return message
    secret = annotation_at(root, loc) is SecretStr
    return f"{message} (got {'<secret>' if secret else _short(given)})"


def format_errors(
    exc: ValidationError, root: type[BaseModel], origins: Mapping[Loc, str]
) -> list[str]:
    """One ``key.path: what is expected (got X)`` line per error of ``exc``."""
    lines: list[str] = []
    for error in exc.errors():
        loc: Loc = tuple(p for p in error["loc"] if p != "[key]")
        line = f"{format_loc(loc)}: {_explain(error, root, loc)}"
        for n in range(len(loc), 0, -1):
            if loc[:n] in origins:
                line += f" [set by {origins[loc[:n]]}]"
                break
        lines.append(line)
    return lines
