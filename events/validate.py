"""Validation of one event against the contract, with precise errors.

`validate_event` returns the event with two private fields added: `_us`
(the timestamp as integer microseconds since the epoch, UTC) and, for `ot`,
`_ops` (the compact op list of ot_replay.ops). It raises BadEvent.
"""

from __future__ import annotations

import posixpath
from datetime import datetime, timedelta, timezone

from .errors import BadEvent
from .schema import COMMON_OPTIONAL, FIELDS, FILE_OPS, UINT32_MAX

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TYPE_NAMES = {str: "string", int: "integer", bool: "boolean", list: "list", dict: "object", type(None): "null",
               float: "number"}


def parse_ts(value: object) -> int:
    """RFC 3339 timestamp -> integer microseconds since the epoch (UTC)."""
    if not isinstance(value, str):
        raise BadEvent("wrong_type", f"ts must be an RFC 3339 string, got {_type_name(value)}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise BadEvent("wrong_type", f"ts {value!r:.40} is not an RFC 3339 timestamp") from None
    if dt.tzinfo is None:
        raise BadEvent("wrong_type", f"ts {value!r:.40} has no UTC offset (expected e.g. ...Z)")
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def format_us(us: int) -> str:
    """Integer microseconds since the epoch -> RFC 3339 UTC with microseconds (…Z)."""
    seconds, micros = divmod(us, 1_000_000)
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def normalize_path(value: str, field: str = "path") -> str:
    """A repl-relative POSIX path, or BadEvent(bad_path) if it escapes the repl."""
    if not value:
        raise BadEvent("bad_path", f"{field} is empty")
    if "\x00" in value:
        raise BadEvent("bad_path", f"{field} {value!r:.60} contains NUL")
    if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":" and value[0].isalpha()):
        raise BadEvent("bad_path", f"{field} {value!r:.60} is absolute; paths are relative to the repl root")
    norm = posixpath.normpath(value)
    if norm == "." or norm == ".." or norm.startswith("../") or ".." in value.split("/"):
        raise BadEvent("bad_path", f"{field} {value!r:.60} escapes the repl root (..)")
    if _has_lone_surrogate(norm):
        raise BadEvent("invalid_unicode", f"{field} holds a lone surrogate")
    return norm


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_strings(value: object, where: str = "event") -> None:
    """Refuse lone surrogates anywhere in a JSON value (they cannot be stored as UTF-8)."""
    if isinstance(value, str):
        if _has_lone_surrogate(value):
            raise BadEvent("invalid_unicode", f"{where} holds a lone surrogate (not valid Unicode text)")
    elif isinstance(value, dict):
        for k, v in value.items():
            check_strings(k, where)
            check_strings(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_strings(v, f"{where}[{i}]")


def validate_event(ev: object) -> dict:
    """Check one decoded event; returns it with `_us` (and `_ops` for ot). Raises BadEvent."""
    from ot_replay.ops import parse_ops  # ot_replay builds on events; imported late to keep layering

    if not isinstance(ev, dict):
        raise BadEvent("wrong_type", f"an event must be a JSON object, got {_type_name(ev)}")
    repl_id = ev.get("repl_id")
    seq = ev.get("seq")
    where = {"repl_id": repl_id if isinstance(repl_id, str) else None,
             "seq": seq if type(seq) is int else None,
             "path": ev.get("path") if isinstance(ev.get("path"), str) else None}
    try:
        return _validate(ev, parse_ops)
    except BadEvent as e:
        raise e.located(**where) from None


def _validate(ev: dict, parse_ops) -> dict:
    for name in ("repl_id", "seq", "ts", "kind"):
        if name not in ev or ev[name] is None:
            raise BadEvent("missing_field", f"missing required field {name!r}")
    if not isinstance(ev["repl_id"], str) or not ev["repl_id"]:
        raise BadEvent("wrong_type", f"repl_id must be a non-empty string, got {_type_name(ev['repl_id'])}")
    seq = ev["seq"]
    if type(seq) is not int or seq < 0:
        raise BadEvent("wrong_type", f"seq must be a non-negative integer, got {seq!r:.40}")
    kind = ev["kind"]
    if not isinstance(kind, str):
        raise BadEvent("wrong_type", f"kind must be a string, got {_type_name(kind)}")
    spec = FIELDS.get(kind)
    if spec is None:
        raise BadEvent("unknown_kind", f"unknown kind {kind!r:.40} (known: {', '.join(FIELDS)})")
    ev["_us"] = parse_ts(ev["ts"])
    for name in COMMON_OPTIONAL:
        value = ev.get(name)
        expected = str if name == "session_id" else int
        if value is not None and type(value) is not expected:
            raise BadEvent("wrong_type", f"{name} must be {_TYPE_NAMES[expected]} or null, got {_type_name(value)}")
    for name, (types, required) in spec.items():
        if name not in ev or (ev[name] is None and type(None) not in types):
            if required:
                raise BadEvent("missing_field", f"{kind} event is missing required field {name!r}")
            continue
        value = ev[name]
        # exact type match: bool is an int in Python, the contract keeps them apart
        if type(value) not in types:
            raise BadEvent(
                "wrong_type",
                f"{kind}.{name} must be {' or '.join(_TYPE_NAMES.get(t, t.__name__) for t in types)}, "
                f"got {_type_name(value)}",
            )
    _check_kind(kind, ev, parse_ops)
    return ev


def _check_kind(kind: str, ev: dict, parse_ops) -> None:
    if "path" in ev and ev["path"] is not None and kind != "snapshot":
        ev["path"] = normalize_path(ev["path"])
    if kind == "ot":
        version = ev["version"]
        if not 0 <= version <= UINT32_MAX:
            raise BadEvent("wrong_type", f"ot.version must be a uint32, got {version}")
        crc = ev.get("crc32")
        if crc is not None and not 0 <= crc <= UINT32_MAX:
            raise BadEvent("wrong_type", f"ot.crc32 must be a uint32 or null, got {crc}")
        ev["_ops"] = parse_ops(ev["ops"])
    elif kind == "file":
        if ev["op"] not in FILE_OPS:
            raise BadEvent("unknown_op", f"file.op must be one of {', '.join(FILE_OPS)}, got {ev['op']!r:.40}")
        if ev["op"] == "move":
            if not ev.get("dest"):
                raise BadEvent("missing_field", "file move is missing required field 'dest'")
            ev["dest"] = normalize_path(ev["dest"], "dest")
    elif kind == "lsp_diagnostic":
        _check_range(ev["range"])
        if not 1 <= ev["severity"] <= 4:
            raise BadEvent("wrong_type", f"severity must be 1..4, got {ev['severity']}")
    elif kind == "snapshot":
        files = {}
        for path, content in ev["files"].items():
            if not isinstance(content, str):
                raise BadEvent("wrong_type", f"snapshot.files[{path!r:.60}] must be a string, got {_type_name(content)}")
            files[normalize_path(path, "snapshot path")] = content
        ev["files"] = files
    elif kind == "package_install":
        if not all(isinstance(p, str) for p in ev["packages"]):
            raise BadEvent("wrong_type", "package_install.packages must be a list of strings")


def _check_range(rng: dict) -> None:
    for end in ("start", "end"):
        pos = rng.get(end)
        if not isinstance(pos, dict):
            raise BadEvent("missing_field", f"range.{end} must be an object with line and character")
        for part in ("line", "character"):
            value = pos.get(part)
            if type(value) is not int or value < 0:
                raise BadEvent("wrong_type", f"range.{end}.{part} must be a non-negative integer, got {value!r:.20}")
