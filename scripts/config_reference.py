"""Print the configuration reference (every key, type, default, description) as markdown.

The README's "Configuration reference" section is this script's output;
tests/test_docs.py checks that they agree.  Usage: python scripts/config_reference.py
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from streamdrift.config import Config


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _model_of(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        if field.default_factory is not None:
            value = field.default_factory()
            if isinstance(value, BaseModel):
                return "(section)"
            return f"`{json.dumps(value, default=str)}`"
        return "**required**"
    value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if hasattr(value, "get_secret_value"):
        return "`***`"
    return f"`{json.dumps(value, default=str)}`"


def rows(
    model: type[BaseModel], prefix: str = "", seen: set[type[BaseModel]] | None = None
) -> list[tuple[str, str, str, str]]:
    seen = set() if seen is None else seen
    seen.add(model)
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = _model_of(field.annotation)
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        if sub is not None and sub in seen:  # listed once already (e.g. a topic's own mapping)
            null = " (or null)" if "None" in str(field.annotation) else ""
            out.append((key, f"section{null}", _default(field), desc))
        elif sub is not None and _type_name(field.annotation).startswith("dict"):
            out.append((key, f"map of name -> {sub.__name__}", _default(field), desc))
            out.extend(rows(sub, f"{key}.<name>.", seen))
        elif sub is not None and _type_name(field.annotation).startswith("list"):
            out.append((key, f"list of {sub.__name__}", _default(field), desc))
            out.extend(rows(sub, f"{key}[].", seen).__iter__())
        elif sub is not None:
            doc = (sub.__doc__ or "").strip().splitlines()[0] if sub.__doc__ else ""
            null = " (or null)" if "None" in str(field.annotation) else ""
            out.append((key, f"section{null}", _default(field), desc or doc))
            out.extend(rows(sub, f"{key}.", seen))
        else:
            out.append((key, _type_name(field.annotation), _default(field), desc))
    return out


def markdown() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, tp, default, desc in rows(Config):
        lines.append(f"| `{key}` | {tp} | {default} | {desc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
