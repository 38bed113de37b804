"""The event contract: kinds, their fields and types (see DESIGN.md)."""

from __future__ import annotations

COMMON_REQUIRED = ("repl_id", "seq", "ts", "kind")

# kind -> {field: (types, required)}; None in types means the field may be null
_STR = (str,)
_INT = (int,)
_BOOL = (bool,)
FIELDS: dict[str, dict[str, tuple[tuple, bool]]] = {
    "repl": {
        "language": (_STR + (type(None),), False),
        "is_private": (_BOOL, True),
        "owner": (_STR + (type(None),), False),
        "title": (_STR + (type(None),), False),
    },
    "ot": {
        "path": (_STR, True),
        "version": (_INT, True),
        "ops": ((list,), True),
        "spooky_version": (_INT + (type(None),), False),
        "crc32": (_INT + (type(None),), False),
        "author": (_STR + (type(None),), False),
        "nonce": (_INT + _STR + (type(None),), False),
    },
    "file": {
        "op": (_STR, True),
        "path": (_STR, True),
        "dest": (_STR + (type(None),), False),
    },
    "lsp_diagnostic": {
        "path": (_STR, True),
        "range": ((dict,), True),
        "severity": (_INT, True),
        "code": (_STR + (type(None),), False),  # null where the tool gave none
        "message": (_STR, True),
        "has_code_action": (_BOOL, False),
    },
    "editor": {
        "action": (_STR, True),
        "path": (_STR + (type(None),), False),
        "detail": ((str, dict, list, int, float, bool, type(None)), False),
    },
    "package_install": {
        "packages": ((list,), True),
        "manager": (_STR + (type(None),), False),
        "status": (_STR + (type(None),), False),
    },
    "run": {
        "command": (_STR, True),
        "exit_code": (_INT + (type(None),), False),
        "output_tail": (_STR + (type(None),), False),
    },
    "shell": {"command": (_STR, True)},
    "snapshot": {"files": ((dict,), True)},
}

KINDS = tuple(FIELDS)
FILE_OPS = ("create", "move", "remove")
UINT32_MAX = 2**32 - 1
INT32_MAX = 2**31 - 1  # range positions are stored as INTEGER
INT64_MAX = 2**63 - 1  # seq, user_id are stored as BIGINT
