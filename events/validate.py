"""Validation of one event against the contract, with precise errors.

`validate_event` returns the event with two private fields added: `_us`
(the timestamp as integer microseconds since the epoch, UTC) and, for `ot`,
`_ops` (the compact op list of ot_replay.ops). It raises BadEvent.
"""

from __future__ import annotations

import posixpath
import re
from datetime import UTC, date, datetime, timedelta

from .errors import BadEvent
from .schema import COMMON_REQUIRED, FIELDS, FILE_OPS, INT32_MAX, INT64_MAX, UINT32_MAX

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_TYPE_NAMES = {str: "string", int: "integer", bool: "boolean", list: "list", dict: "object", type(None): "null",
               float: "number"}
_TS = re.compile(r"(\d{4}-\d\d-\d\d)T([01]\d|2[0-3]):([0-5]\d):([0-5]\d)\.(\d{6})Z")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
_DAYS: dict[str, int] = {}
_PATHS: dict[str, str] = {}


def parse_ts(value: object) -> int:
    """RFC 3339 timestamp -> integer microseconds since the epoch (UTC)."""
    if type(value) is str:
        m = _TS.fullmatch(value)
        if m is not None:  # the common spelling, parsed without datetime
            day = _DAYS.get(m[1])
            if day is None:
                try:
                    day = date.fromisoformat(m[1]).toordinal() - _EPOCH_ORDINAL
                except ValueError:
                    raise BadEvent("wrong_type", f"ts {value!r:.40} is not an RFC 3339 timestamp") from None
                if len(_DAYS) > 100_000:
                    _DAYS.clear()
                _DAYS[m[1]] = day
            return (((day * 24 + int(m[2])) * 60 + int(m[3])) * 60 + int(m[4])) * 1_000_000 + int(m[5])
    if not isinstance(value, str):
        raise BadEvent("wrong_type", f"ts must be an RFC 3339 string, got {_type_name(value)}")
    if not _RFC3339.fullmatch(value):  # fromisoformat alone also takes ISO weeks, basic format, no seconds
        raise BadEvent("wrong_type", f"ts {value!r:.40} is not an RFC 3339 timestamp (e.g. 2024-03-01T12:00:00Z)")
    try:
        dt = datetime.fromisoformat(value.upper())
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
    known = _PATHS.get(value)
    if known is not None:
        return known
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
    if len(_PATHS) > 100_000:
        _PATHS.clear()
    _PATHS[value] = norm
    return norm


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def storable_text(text: str) -> str:
    """text as valid UTF-8 for a database column: lone surrogates (bytes that were not UTF-8, read with
    surrogateescape, become these too) written as backslash escapes, e.g. \\ud800. Valid text is kept as is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def check_strings(value: object, where: str = "event",
                  what: str = "a lone surrogate (not valid Unicode text)") -> None:
    """Refuse lone surrogates anywhere in a JSON value, keys included (they cannot be stored as UTF-8).

    Iterative, with the location kept as links to the parent and spelled out only for an error: a value
    nested as deep as a JSON parser allows must cost neither the interpreter's stack nor quadratic time.
    """
    stack: list[tuple[object, tuple]] = [(value, (None, where))]
    while stack:
        value, at = stack.pop()
        if isinstance(value, str):
            if _has_lone_surrogate(value):
                raise BadEvent("invalid_unicode", f"{_spell(at)} holds {what}")
        elif isinstance(value, dict):
            for k, v in reversed(value.items()):  # reversed: the first bad member is reported first
                stack.append((v, (at, f".{k}")))
                if isinstance(k, str):
                    stack.append((k, (at, f" key {k!r:.40}")))
        elif isinstance(value, list):
            stack.extend((value[i], (at, f"[{i}]")) for i in range(len(value) - 1, -1, -1))


def _spell(at: tuple) -> str:
    parts = []
    while at is not None:
        at, part = at
        parts.append(part)
    text = "".join(reversed(parts))
    return text if len(text) <= 200 else text[:100] + "..." + text[-100:]


def parse_ops(raw: object, check_unicode: bool = True) -> list:
    """Validate a contract op list and make it compact: n skip, -n delete, "s" insert.

    check_unicode=False skips the lone-surrogate check for text a strict
    decoder (orjson, Arrow) already produced.
    """
    if type(raw) is not list:
        raise BadEvent("wrong_type", f"ops must be a list, got {_type_name(raw)}")
    out: list = []
    append = out.append
    for op in raw:  # fast path: every op well formed; anything else is redone below for the precise error
        if type(op) is not dict or len(op) != 1:
            break
        value = op.get("insert")
        if value is not None:
            if type(value) is not str or (check_unicode and _has_lone_surrogate(value)):
                break
            if value:
                append(value)
            continue
        value = op.get("skip")
        if value is None:
            value = op.get("delete")
            if type(value) is not int or value < 0:
                break
            if value:
                append(-value)
        elif type(value) is not int or value < 0:
            break
        elif value:
            append(value)
    else:
        return out
    out = []
    for i, op in enumerate(raw):
        if type(op) is not dict or len(op) != 1:
            raise BadEvent(
                "unknown_op",
                f"op #{i} must be an object with exactly one of skip/delete/insert, got {op!r:.80}",
            )
        for name, value in op.items():
            if name == "insert":
                if type(value) is not str:
                    raise BadEvent("wrong_type", f"op #{i} insert must be a string, got {_type_name(value)}")
                if check_unicode and _has_lone_surrogate(value):
                    raise BadEvent("invalid_unicode", f"op #{i} insert holds a lone surrogate (not valid Unicode)")
                if value:
                    out.append(value)
            elif name == "skip" or name == "delete":
                if type(value) is not int or value < 0:
                    raise BadEvent("wrong_type", f"op #{i} {name} must be a non-negative integer, got {value!r:.40}")
                if value:
                    out.append(value if name == "skip" else -value)
            else:
                raise BadEvent("unknown_op", f"op #{i} has unknown op {name!r:.40} (expected skip, delete or insert)")
    return out


def validate_event(ev: object, trusted_text: bool = False, ops: bool = True) -> dict:
    """Check one decoded event; returns it with `_us` (and `_ops` for ot). Raises BadEvent.

    trusted_text: every string came from a strict UTF-8 decoder, so lone
    surrogates are impossible and need no check. ops=False leaves an ot
    event's op list to the caller (ingest checks it while replaying, where a
    bad op list breaks its file like any bad packet).
    """
    if type(ev) is not dict:
        raise BadEvent("wrong_type", f"an event must be a JSON object, got {_type_name(ev)}")
    try:
        return _validate(ev, trusted_text, ops)
    except BadEvent as e:
        raise located_in(e, ev) from None


def located_in(error: BadEvent, ev: object) -> BadEvent:
    """error with the repl, seq and path of the record it is about, where they have the right types."""
    if not isinstance(ev, dict):
        return error
    repl_id, seq, path = ev.get("repl_id"), ev.get("seq"), ev.get("path")
    return error.located(repl_id=repl_id if isinstance(repl_id, str) else None,
                         seq=seq if type(seq) is int and 0 <= seq <= INT64_MAX else None,
                         path=path if isinstance(path, str) else None)


def _validate(ev: dict, trusted_text: bool, ops: bool) -> dict:
    for name in COMMON_REQUIRED:
        if ev.get(name) is None:
            raise BadEvent("missing_field", f"missing required field {name!r}")
    if type(ev["repl_id"]) is not str or not ev["repl_id"]:
        raise BadEvent("wrong_type", f"repl_id must be a non-empty string, got {_type_name(ev['repl_id'])}")
    seq = ev["seq"]
    if type(seq) is not int or not 0 <= seq <= INT64_MAX:
        raise BadEvent("wrong_type", f"seq must be a non-negative 64-bit integer, got {seq!r:.40}")
    kind = ev["kind"]
    if not isinstance(kind, str):
        raise BadEvent("wrong_type", f"kind must be a string, got {_type_name(kind)}")
    spec = FIELDS.get(kind)
    if spec is None:
        raise BadEvent("unknown_kind", f"unknown kind {kind!r:.40} (known: {', '.join(FIELDS)})")
    ev["_us"] = parse_ts(ev["ts"])
    value = ev.get("session_id")
    if value is not None and type(value) is not str:
        raise BadEvent("wrong_type", f"session_id must be string or null, got {_type_name(value)}")
    value = ev.get("user_id")
    if value is not None and (type(value) is not int or not -INT64_MAX - 1 <= value <= INT64_MAX):
        raise BadEvent("wrong_type", f"user_id must be a 64-bit integer or null, got {value!r:.40}")
    for name, (types, required) in spec.items():
        value = ev.get(name)
        if value is None and type(None) not in types:  # absent, or null where null is not allowed
            if required:
                raise BadEvent("missing_field", f"{kind} event is missing required field {name!r}")
            continue
        # exact type match: bool is an int in Python, the contract keeps them apart
        if type(value) not in types:
            raise BadEvent(
                "wrong_type",
                f"{kind}.{name} must be {' or '.join(_TYPE_NAMES.get(t, t.__name__) for t in types)}, "
                f"got {_type_name(value)}",
            )
    _check_kind(kind, ev, trusted_text, ops)
    return ev


def _check_kind(kind: str, ev: dict, trusted_text: bool, ops: bool) -> None:
    path = ev.get("path")
    if path is not None:
        if type(path) is not str:  # a kind without a path field may still carry one
            raise BadEvent("wrong_type", f"{kind}.path must be a string, got {_type_name(path)}")
        ev["path"] = normalize_path(path)
    if kind == "ot":
        version = ev["version"]
        if not 0 <= version <= UINT32_MAX:
            raise BadEvent("wrong_type", f"ot.version must be a uint32, got {version}")
        crc = ev.get("crc32")
        if crc is not None and not 0 <= crc <= UINT32_MAX:
            raise BadEvent("wrong_type", f"ot.crc32 must be a uint32 or null, got {crc}")
        if ops:
            ev["_ops"] = parse_ops(ev["ops"], check_unicode=not trusted_text)
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
    elif kind == "package_install" and not all(isinstance(p, str) for p in ev["packages"]):
        raise BadEvent("wrong_type", "package_install.packages must be a list of strings")


def _check_range(rng: dict) -> None:
    for end in ("start", "end"):
        pos = rng.get(end)
        if not isinstance(pos, dict):
            raise BadEvent("missing_field", f"range.{end} must be an object with line and character")
        for part in ("line", "character"):
            value = pos.get(part)
            if type(value) is not int or not 0 <= value <= INT32_MAX:
                raise BadEvent("wrong_type",
                               f"range.{end}.{part} must be a non-negative 32-bit integer, got {value!r:.20}")
