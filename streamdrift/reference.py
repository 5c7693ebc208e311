"""Reference profiles: what training data looked like, so that PSI compares against it.

``streamdrift reference build`` reads training data (CSV, JSON lines or Parquet), maps every row
with the configuration's ``mapping`` (the same decoder the service uses: paths, declared and
inferred types, missing values) and writes one versioned JSON document:

* per model and feature its type and, for PSI, the reference histogram — numeric: quantile edges
  and counts with the PSI's ``bins``; categorical: categories and counts, folded to
  ``max_categories`` — built by :meth:`PSI.profile_from_values` /
  :meth:`CategoricalPSI.profile_from_values`, the code the PSI's own warm-up uses;
* per model the isolation forest's workspace limits: per numeric feature the min and max of the
  complete rows (a constant feature padded as the forest's warm-up pads it).

The configuration points at it with ``reference: {path: FILE}`` or ``reference: {redis_key:
KEY}`` (written there by ``--to-redis``). When the detector bank creates a PSI stream for a
feature the profile has, the detector starts from the profile instead of a warm-up, and the
forest of a model starts from the profile's limits. :func:`check` names every mismatch between
profile and configuration (feature missing, type changed, PSI parameters the profile was not
built for) at startup and in ``check-config``. No pickle: the document is JSON.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streamdrift.config import Config, FeatureType
from streamdrift.errors import ConfigError, StreamdriftError

__all__ = [
    "REFERENCE_KIND",
    "REFERENCE_VERSION",
    "Reference",
    "build_reference",
    "check",
    "load_reference",
    "read_rows",
    "reference_for",
    "summary_lines",
    "validate",
]

REFERENCE_KIND = "streamdrift-reference"
REFERENCE_VERSION = 1

log = logging.getLogger("streamdrift")


# -- the document ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reference:
    """A loaded, structurally checked reference document."""

    doc: dict[str, Any]
    source: str

    @classmethod
    def from_document(cls, doc: Any, source: str) -> Reference:
        """Check the document's structure; raise ``ConfigError`` naming what is wrong."""
        fix = "rebuild it with `streamdrift reference build`"
        if not isinstance(doc, dict) or doc.get("kind") != REFERENCE_KIND:
            raise ConfigError(f"{source} is not a streamdrift reference profile; {fix}")
        if doc.get("version") != REFERENCE_VERSION:
            raise ConfigError(
                f"{source} has reference version {doc.get('version')!r}; this streamdrift reads "
                f"version {REFERENCE_VERSION}; {fix}"
            )
        models = doc.get("models")
        if not isinstance(models, dict) or not models:
            raise ConfigError(f"{source} holds no models; {fix}")
        for model, entry in models.items():
            feats = entry.get("features") if isinstance(entry, dict) else None
            if not isinstance(feats, dict):
                raise ConfigError(f"{source}: model {model!r} has no features; {fix}")
            for name, f in feats.items():
                if not isinstance(f, dict) or f.get("type") not in ("numeric", "categorical"):
                    raise ConfigError(f"{source}: {model}/{name} has no valid type; {fix}")
        return cls(doc, source)

    @property
    def models(self) -> dict[str, Any]:
        models: dict[str, Any] = self.doc["models"]
        return models

    def feature(self, model: str, feature: str) -> dict[str, Any] | None:
        entry = self.models.get(model)
        if entry is None:
            return None
        found: dict[str, Any] | None = entry["features"].get(feature)
        return found

    def psi_kwargs(
        self, model: str, feature: str, ftype: FeatureType, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Constructor kwargs of a PSI stream: ``params`` plus ``reference`` when the profile
        has a matching entry (otherwise unchanged: the detector warms up, and a log line says
        why)."""
        entry = self.feature(model, feature)
        if entry is None:
            if model in self.models:
                log.warning("reference %s has no %s/%s: PSI warms up", self.source, model, feature)
            return dict(params)
        problem = _psi_problem(entry, ftype, params)
        if problem is not None:
            log.warning("reference %s, %s/%s: %s; PSI warms up", self.source, model, feature,
                        problem)
            return dict(params)
        return {**params, "reference": entry["psi"]["profile"]}

    def forest_kwargs(
        self, model: str, features: tuple[str, ...], params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Isolation forest kwargs with the profile's limits when it has them for exactly these
        features (and the config sets none)."""
        entry = self.models.get(model, {}).get("isolation_forest")
        if entry is None or "limits" in params:
            return dict(params)
        if tuple(entry["features"]) != features:
            log.warning(
                "reference %s: model %s's forest was profiled on %s, the stream has %s; the "
                "forest learns its limits", self.source, model, entry["features"], list(features)
            )
            return dict(params)
        return {**params, "limits": {"mins": entry["mins"], "maxs": entry["maxs"]}}


def _psi_problem(entry: Mapping[str, Any], ftype: str, params: Mapping[str, Any]) -> str | None:
    if entry["type"] != ftype:
        return f"profiled as {entry['type']}, the config makes it {ftype}"
    psi = entry.get("psi")
    if not isinstance(psi, dict):
        return "the profile has no PSI histogram for it"
    if ftype == "numeric":
        want, have = int(params.get("bins", 10)), psi.get("bins")
        if want != have:
            return f"profiled with psi bins {have}, the config's psi uses bins {want}"
    return None


def load_reference(config: Config) -> Reference | None:
    """The profile the config points at (``None`` without a ``reference`` section)."""
    ref = config.reference
    if ref is None:
        return None
    if ref.path is not None:
        path = Path(ref.path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"reference.path {ref.path}: cannot read it ({exc.strerror}); build it with "
                "`streamdrift reference build --config ... --input TRAIN --out "
                f"{ref.path}`"
            ) from None
        source = str(path)
    else:
        if config.redis is None:
            raise ConfigError(
                "reference.redis_key needs a redis section (the Redis holding the profile); "
                "add one or use reference.path"
            )
        import redis

        key = ref.redis_key or ""
        try:
            client = redis.Redis.from_url(config.redis.url.get_secret_value())
            raw = client.get(key)
        except redis.RedisError as exc:
            raise ConfigError(f"reference.redis_key {key!r}: Redis failed: {exc}") from None
        if raw is None:
            raise ConfigError(
                f"reference.redis_key {key!r} does not exist in Redis; load it with "
                "`streamdrift reference build ... --to-redis`"
            )
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        source = f"redis key {key!r}"
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"reference {source} is not JSON ({exc}); rebuild it") from None
    return Reference.from_document(doc, source)


_CACHE: dict[int, tuple[Config, Reference | None]] = {}


def reference_for(config: Config) -> Reference | None:
    """:func:`load_reference`, once per configuration object (the bank calls it per stream)."""
    if config.reference is None:
        return None
    cached = _CACHE.get(id(config))
    if cached is None or cached[0] is not config:
        cached = _CACHE[id(config)] = (config, load_reference(config))
    return cached[1]


def check(config: Config, reference: Reference | None = None) -> list[str]:
    """Every mismatch between the profile and the configuration, one line each.

    Loads the profile when not given; errors loading it are raised (``ConfigError``).
    """
    ref = reference if reference is not None else reference_for(config)
    if ref is None:
        return []
    problems: list[str] = []
    where = f"reference {ref.source}"
    declared = dict(config.mapping.feature_types)
    fields = config.mapping.features.fields
    named = set(fields) if fields is not None else set(declared)
    for model, entry in sorted(ref.models.items()):
        feats: dict[str, Any] = entry["features"]
        for name in sorted(named - set(feats)):
            problems.append(
                f"{where}: model {model!r} has no feature {name!r}, which the config maps; "
                "rebuild the profile from data that has it"
            )
        for name, f in sorted(feats.items()):
            ftype = declared.get(name, f["type"])
            if name in declared and declared[name] != f["type"]:
                problems.append(
                    f"{where}: {model}/{name} was profiled as {f['type']}, "
                    f"mapping.feature_types makes it {declared[name]}; rebuild the profile or "
                    "fix the type"
                )
                continue
            monitors = config.monitors_for(model, name, ftype)
            if "psi" not in monitors:
                continue
            problem = _psi_problem(f, ftype, monitors["psi"])
            if problem is not None:
                problems.append(f"{where}: {model}/{name}: {problem}; rebuild the profile")
    return problems


def validate(config: Config, source: str = "configuration") -> None:
    """Raise ``ConfigValidationError`` listing every mismatch (startup, check-config)."""
    from streamdrift.config import ConfigValidationError

    problems = check(config)
    if problems:
        raise ConfigValidationError(source, problems)


# -- reading training data -----------------------------------------------------------------------


def read_rows(path: str | Path, config: Config | None = None) -> Iterator[bytes]:
    """Each row of a ``.csv``, ``.jsonl``/``.json`` or ``.parquet`` file as a JSON object.

    CSV and Parquet column names are the events' dotted paths (``features.amount``); they become
    nested objects. CSV cells are parsed as numbers where they are numbers (except for features
    declared categorical in ``config``), empty cells are missing.
    """
    p = Path(path)
    if not p.exists():
        raise StreamdriftError(f"input file {path} does not exist")
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    if suffix in (".jsonl", ".json", ".ndjson"):
        with p.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield line.rstrip(b"\r\n")
    elif suffix == ".csv":
        keep_str = _categorical_paths(config)
        with p.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                flat = {
                    k: (None if v == "" else v if k in keep_str else _number_or_str(v))
                    for k, v in row.items()
                    if k is not None
                }
                yield orjson.dumps(_nest(flat))
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # type: ignore[import-untyped]
        except ImportError:
            raise StreamdriftError(
                "reading parquet needs pyarrow, which is not installed; install it with: "
                "pip install 'streamdrift[parquet]' (or convert the file to csv/jsonl)"
            ) from None
        for batch in pq.ParquetFile(p).iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                yield orjson.dumps(_nest(row), default=str)
    else:
        raise StreamdriftError(
            f"input file {path}: unknown format {p.suffix!r}; use .csv, .jsonl or .parquet"
        )


def _number_or_str(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        pass
    try:
        f = float(v)
    except ValueError:
        return v
    return f if math.isfinite(f) else None


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def _categorical_paths(config: Config | None) -> set[str]:
    if config is None:
        return set()
    m = config.mapping
    cats = {n for n, t in m.feature_types.items() if t == "categorical"}
    paths: set[str] = set()
    if m.features.fields is not None:
        paths |= {path for name, path in m.features.fields.items() if name in cats}
    elif m.features.path is not None:
        paths |= {f"{m.features.path}.{name}" for name in cats}
    if m.prediction and m.prediction_type == "categorical":
        paths.add(m.prediction)
    return paths


# -- building ----------------------------------------------------------------------------------


@dataclass(slots=True)
class BuildStats:
    rows: int = 0
    invalid: int = 0
    invalid_by_reason: dict[str, int] | None = None
    seconds: float = 0.0


def build_reference(
    config: Config,
    rows: Iterator[bytes],
    *,
    source: str,
    model: str | None = None,
    batch_size: int = 10_000,
) -> tuple[dict[str, Any], BuildStats]:
    """Decode ``rows`` with the config's mapping and profile them (see the module docstring).

    ``model`` sets the model id of every row (training data often has no model column).
    """
    from streamdrift.detectors import PSI, CategoricalPSI
    from streamdrift.events import Decoder, RawRecord

    if model is not None:
        model_src = config.mapping.model_id.model_copy(update={"path": None, "constant": model})
        mapping = config.mapping.model_copy(update={"model_id": model_src})
        config = config.model_copy(update={"mapping": mapping})
    decoder = Decoder.from_config(config)
    started = time.perf_counter()
    stats = BuildStats(invalid_by_reason={})
    numeric: dict[str, dict[str, list[np.ndarray[Any, Any]]]] = {}
    categorical: dict[str, dict[str, list[np.ndarray[Any, Any]]]] = {}
    types: dict[str, dict[str, FeatureType]] = {}
    chunk: list[RawRecord] = []

    def flush() -> None:
        batch = decoder.decode_batch(chunk)
        stats.invalid += len(batch.invalid)
        assert stats.invalid_by_reason is not None
        for reason, n in batch.invalid_by_reason.items():
            stats.invalid_by_reason[reason] = stats.invalid_by_reason.get(reason, 0) + n
        for mid, cols in batch.per_model.items():
            for name, values in cols.numeric.items():
                numeric.setdefault(mid, {}).setdefault(name, []).append(values)
            for name, cat_values in cols.categorical.items():
                categorical.setdefault(mid, {}).setdefault(name, []).append(cat_values)
            types.setdefault(mid, {}).update(cols.types)
        chunk.clear()

    for n, row in enumerate(rows):
        chunk.append(RawRecord(row, source, 0, n))
        stats.rows += 1
        if len(chunk) >= batch_size:
            flush()
    if chunk:
        flush()
    models: dict[str, Any] = {}
    for mid in sorted(types):
        feats: dict[str, Any] = {}
        for name, parts in sorted(numeric.get(mid, {}).items()):
            values = np.concatenate(parts)
            psi = config.monitors_for(mid, name, "numeric").get("psi", {})
            bins = int(psi.get("bins", 10))
            profile = PSI.profile_from_values(values, bins=bins)
            feats[name] = {
                "type": "numeric",
                "n": int(values.size),
                "psi": {"bins": bins, "profile": profile},
            }
            finite = values[np.isfinite(values)]
            if finite.size:
                profile["mean"] = float(finite.mean())
        for name, parts in sorted(categorical.get(mid, {}).items()):
            cats = np.concatenate(parts)
            psi = config.monitors_for(mid, name, "categorical").get("psi", {})
            cap = psi.get("max_categories", config.limits.max_categories)
            feats[name] = {
                "type": "categorical",
                "n": int(cats.size),
                "psi": {
                    "max_categories": cap,
                    "profile": CategoricalPSI.profile_from_values(cats, max_categories=cap),
                },
            }
        entry: dict[str, Any] = {"features": feats}
        forest = _forest_limits(numeric.get(mid, {}))
        if forest is not None:
            entry["isolation_forest"] = forest
        models[mid] = entry
    if not models:
        raise StreamdriftError(
            f"{source}: no row could be mapped ({stats.invalid} rejected: "
            f"{_reasons(stats)}); check the config's mapping against the file's columns "
            "(CSV/Parquet column names are the events' dotted paths, e.g. features.amount), "
            "or set the model with --model"
        )
    stats.seconds = time.perf_counter() - started
    doc = {
        "kind": REFERENCE_KIND,
        "version": REFERENCE_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "rows": stats.rows,
        "rejected_rows": stats.invalid,
        "models": models,
    }
    return doc, stats


def _forest_limits(numeric: Mapping[str, list[np.ndarray[Any, Any]]]) -> dict[str, Any] | None:
    # The vector the bank builds: the numeric features, sorted, without __prediction__ etc.
    names = sorted(n for n in numeric if not n.startswith("__"))
    if len(names) < 2:
        return None
    matrix = np.column_stack([np.concatenate(numeric[n]) for n in names])
    good = matrix[np.isfinite(matrix).all(axis=1)]
    if good.shape[0] == 0:
        return None
    lo, hi = good.min(axis=0), good.max(axis=0)
    flat = hi <= lo  # padded as HalfSpaceTrees pads a constant feature of its warm-up
    pad = 0.5 * np.maximum(np.abs(lo), 1.0)
    return {
        "features": names,
        "rows": int(good.shape[0]),
        "mins": np.where(flat, lo - pad, lo).tolist(),
        "maxs": np.where(flat, hi + pad, hi).tolist(),
    }


def _reasons(stats: BuildStats) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((stats.invalid_by_reason or {}).items())) or "-"


def summary_lines(doc: Mapping[str, Any]) -> list[str]:
    """What a profile holds, for the command's output."""
    lines = []
    for mid, entry in doc["models"].items():
        feats = entry["features"]
        kinds = ", ".join(
            f"{n} ({f['type']}, {len(f['psi']['profile']['counts'])} bins)"
            for n, f in feats.items()
        )
        forest = entry.get("isolation_forest")
        lines.append(f"model {mid}: {kinds}")
        if forest:
            lines.append(f"  isolation forest limits on {len(forest['features'])} features")
    return lines



# -- the command --------------------------------------------------------------------------------


def command_build(args: Any) -> int:
    """``streamdrift reference build`` (arguments parsed in :mod:`streamdrift.cli`)."""
    import sys

    from streamdrift.commands import config_from

    config = config_from(args.config)
    out = Path(args.out)
    if out.suffix.lower() not in (".json", ""):
        raise StreamdriftError(f"--out {args.out}: the profile is JSON; name it *.json")
    if args.to_redis and config.redis is None:
        raise ConfigError(
            "--to-redis needs a redis section in the config (the Redis to load the profile "
            "into); add one, or drop --to-redis and set reference.path"
        )
    doc, stats = build_reference(
        config, read_rows(args.input, config), source=Path(args.input).name, model=args.model
    )
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    print(
        f"reference profile {out}: {stats.rows:,} rows ({stats.invalid:,} rejected"
        + (f": {_reasons(stats)}" if stats.invalid else "")
        + f") in {stats.seconds:.2f} s",
        file=sys.stderr,
    )
    for line in summary_lines(doc):
        print(f"  {line}", file=sys.stderr)
    if args.to_redis:
        import redis

        assert config.redis is not None
        key = args.redis_key or f"{config.redis.key_prefix}:reference"
        try:
            redis.Redis.from_url(config.redis.url.get_secret_value()).set(key, data)
        except redis.RedisError as exc:
            raise StreamdriftError(
                f"writing the profile to Redis failed: {exc}; check redis.url (the profile "
                f"file {out} was written)"
            ) from None
        print(f"  loaded into Redis key {key!r}; point the config at it: "
              f"reference: {{redis_key: {key}}}", file=sys.stderr)
    else:
        print(f"  point the config at it: reference: {{path: {out}}}", file=sys.stderr)
    return 0
