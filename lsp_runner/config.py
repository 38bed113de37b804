"""Settings of pyright and ruff, with defaults close to what Replit's pyright-extended showed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import LspError

# pyright-extended's own ruff selection (packages/pyright-ruff in replit/pyright-extended).
# It holds ruff's defaults (E4, E7, E9, F) and everything the session simulator logs (E, F, W).
REPLIT_RUFF_SELECT = ("E", "W", "F", "I", "RUF", "B", "C4", "ARG", "SIM")

# ruff owns unused-code diagnostics (F401, F841); pyright's versions are dropped.
UNUSED_CODE_RULES = ("reportUnusedImport", "reportUnusedVariable", "reportUnusedClass",
                     "reportUnusedFunction")

_SEVERITIES = ("none", "information", "warning", "error", "true", "false")


@dataclass(frozen=True)
class LspConfig:
    """How pyright and ruff are run; one config gives the same settings to the pool and the CLI."""

    # pyright
    type_checking_mode: str = "basic"  # Replit's default, and pyright's own
    python_version: str = "3.11"
    python_platform: str = "Linux"
    rule_overrides: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    python_path: str | None = None  # an interpreter whose site-packages pyright may see
    drop_pyright_rules: tuple[str, ...] = UNUSED_CODE_RULES
    # ruff
    ruff_select: tuple[str, ...] = REPLIT_RUFF_SELECT
    ruff_ignore: tuple[str, ...] = ()
    ruff_line_length: int = 88
    # files
    # larger files are written (imports still resolve) but not checked: pyright needs ~4 s for
    # 200 KB of real code, and minutes for 200 KB of one repeated assignment
    max_file_bytes: int = 500_000
    python_suffixes: tuple[str, ...] = (".py", ".pyi")

    def __post_init__(self) -> None:
        if self.type_checking_mode not in ("off", "basic", "standard", "strict"):
            raise LspError(f"type_checking_mode {self.type_checking_mode!r}: use off, basic, "
                           "standard or strict")
        for rule, level in self.rule_overrides.items():
            if not rule.startswith("report") or str(level).lower() not in _SEVERITIES:
                raise LspError(f"rule override {rule}={level!r}: expected a pyright rule "
                               f"(report...) and one of {', '.join(_SEVERITIES)}")
        if self.max_file_bytes < 1 or self.ruff_line_length < 1:
            raise LspError("max_file_bytes and ruff_line_length must be positive")
        object.__setattr__(self, "rule_overrides", MappingProxyType(dict(self.rule_overrides)))

    def pyrightconfig(self) -> dict:
        """The pyrightconfig.json both the language servers and the pyright CLI read."""
        config = {
            "typeCheckingMode": self.type_checking_mode,
            "pythonVersion": self.python_version,
            "pythonPlatform": self.python_platform,
        }
        config.update({rule: str(level).lower() for rule, level in self.rule_overrides.items()})
        return config

    def pyrightconfig_json(self) -> str:
        """`pyrightconfig()` as JSON text."""
        return json.dumps(self.pyrightconfig(), indent=1, sort_keys=True)

    def ruff_args(self) -> list[str]:
        """Arguments of `ruff check` after the subcommand: config files of the repl are ignored."""
        args = ["--isolated", "--no-cache", "--exit-zero", "--no-respect-gitignore", "--force-exclude",
                "--output-format", "json", "--line-length", str(self.ruff_line_length),
                "--target-version", "py" + self.python_version.replace(".", "")]
        args += ["--select", ",".join(self.ruff_select)]
        if self.ruff_ignore:
            args += ["--ignore", ",".join(self.ruff_ignore)]
        return args

    def is_python(self, path: str) -> bool:
        """Whether a file gets diagnostics (pyright and ruff only look at Python files)."""
        return path.endswith(self.python_suffixes)


DEFAULT_CONFIG = LspConfig()
