"""Real Python modules that simulated users type: the standard library, or a folder given by the caller."""

from __future__ import annotations

import functools
import os
import pathlib
import random
import sysconfig
import warnings

MIN_BYTES, MAX_BYTES = 1_000, 12_000
_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__"}
# characters that some tools count as line breaks and others do not: keep line numbers unambiguous
_LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


class Corpus:
    """A sorted list of module files; `pick` returns the text of a random one that compiles."""

    def __init__(self, paths: list[pathlib.Path]) -> None:
        if not paths:
            raise ValueError("the corpus has no .py files; pass a folder that holds some")
        self.paths = paths
        self._texts: dict[pathlib.Path, str | None] = {}

    def text(self, path: pathlib.Path) -> str | None:
        """The module's text normalized to end in one newline, or None when it is unusable."""
        if path not in self._texts:
            self._texts[path] = _load(path)
        return self._texts[path]

    def pick(self, rng: random.Random, avoid: set[str] = frozenset()) -> tuple[str, str]:
        """A random usable module as (stem, text), preferring ones not in `avoid`."""
        order = list(range(len(self.paths)))
        rng.shuffle(order)
        fallback = None
        for index in order:
            path = self.paths[index]
            text = self.text(path)
            if text is None:
                continue
            if path.stem not in avoid:
                return path.stem, text
            fallback = fallback or (path.stem, text)
        if fallback is None:
            raise ValueError("no corpus file compiles as Python; pass a folder of valid modules")
        return fallback


def _load(path: pathlib.Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    text = text.replace("\r\n", "\n")
    if any(char in text for char in _LINE_BREAKS) or "\t" in text or not text.strip():
        return None
    text = text.rstrip("\n") + "\n"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old escapes in stdlib strings warn on compile
            compile(text, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    return text


@functools.lru_cache(maxsize=1)
def stdlib_corpus() -> Corpus:
    """Small pure-Python modules of the running interpreter's standard library."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            path = pathlib.Path(folder) / name
            if name.endswith(".py") and MIN_BYTES <= _size(path) <= MAX_BYTES:
                paths.append(path)
    return Corpus(paths)


def folder_corpus(folder: pathlib.Path) -> Corpus:
    """Every .py file under `folder`, in sorted order."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"corpus folder {folder} does not exist or is not a folder")
    return Corpus(sorted(p for p in folder.rglob("*.py") if p.is_file()))


def _size(path: pathlib.Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def load_corpus(folder: pathlib.Path | None) -> Corpus:
    """The corpus to draw from: `folder` when given, else the standard library."""
    return stdlib_corpus() if folder is None else folder_corpus(folder)
