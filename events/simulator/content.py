"""The files a simulated repl ends up holding: a main module, helpers it imports, a few data files."""

from __future__ import annotations

import ast
import json
import random
from dataclasses import dataclass

from .corpus import Corpus

HELPER_NAMES = (
    "utils",
    "helpers",
    "models",
    "game",
    "config",
    "database",
    "shapes",
    "player",
    "inventory",
    "storage",
    "tools",
    "logic",
    "calc",
    "api_client",
    "parsing",
)
UNICODE_COMMENTS = (
    "# TODO: vérifier les entrées de l'utilisateur",
    "# 计算结果并打印",
    "# ¡Ojo! ñandú, pingüino",
    "# 🚀 fast path",
    "# naïve café ☕ résumé",
    "# Привет, мир",
    "# こんにちは 🌸",
    "# größer als 10 → überspringen",
    "# 😀🎉 done",
)
UNICODE_LINES = (
    'GREETING = "Olá, mundo 👋"',
    'LABEL = "Résumé: 中文 ✓"',
    'print("Démarrage… 🚀")',
    'EMOJI = "🐍🔥"',
)
_PACKAGES = (
    "requests",
    "flask",
    "numpy",
    "pandas",
    "matplotlib",
    "rich",
    "pygame",
    "discord.py",
    "beautifulsoup4",
    "python-dotenv",
    "replit",
    "openai",
    "colorama",
    "termcolor",
)


@dataclass
class FileSpec:
    """A file the user will write: where, what, and its role ("main", "helper" or "data")."""

    path: str
    text: str
    role: str


def repl_files(rng: random.Random, corpus: Corpus, title: str) -> list[FileSpec]:
    """The files of one repl, main.py first."""
    main_stem, main_text = corpus.pick(rng)
    used = {main_stem}
    helpers = []
    for name in rng.sample(HELPER_NAMES, rng.choice((1, 1, 2, 2, 3, 4))):
        stem, text = corpus.pick(rng, used)
        used.add(stem)
        helpers.append(FileSpec(f"{name}.py", decorate(text, rng), "helper"))
    files = [FileSpec("main.py", decorate(glue(main_text, helpers, rng), rng), "main"), *helpers]
    if rng.random() < 0.4:
        files.append(FileSpec("README.md", readme(title, rng), "data"))
    if rng.random() < 0.35:
        files.append(FileSpec("requirements.txt", requirements(rng), "data"))
    if rng.random() < 0.25:
        files.append(FileSpec("data.json", data_json(rng), "data"))
    return files


def decorate(text: str, rng: random.Random) -> str:
    """`text` with a few non-ASCII comments or constants added before top-level statements."""
    lines = text.split("\n")
    places = _top_level_starts(text)
    for line in sorted(
        rng.sample(places, min(len(places), rng.choice((0, 1, 1, 2)))), reverse=True
    ):
        pool = UNICODE_COMMENTS if rng.random() < 0.7 else UNICODE_LINES
        lines.insert(line - 1, rng.choice(pool))
    return "\n".join(lines)


def glue(main_text: str, helpers: list[FileSpec], rng: random.Random) -> str:
    """`main_text` importing the helpers at the top and using them at the end."""
    lines = main_text.split("\n")
    imports, uses = [], []
    for helper in helpers:
        module = helper.path[:-3]
        names = _public_functions(helper.text)
        if names and rng.random() < 0.4:
            name = rng.choice(names)
            imports.append(f"from {module} import {name}")
            uses.append(f'print("→ {name}:", {name}.__name__)')
        else:
            imports.append(f"import {module}")
            uses.append(
                f"print({module}.{rng.choice(names)}.__name__)"
                if names
                else f"print({module}.__name__)"
            )
    at = _after_header(main_text)
    lines[at:at] = imports
    tail = ["", "", rng.choice(UNICODE_COMMENTS), *uses, ""]
    return "\n".join(lines).rstrip("\n") + "\n" + "\n".join(tail)


def _after_header(text: str) -> int:
    # 0-based line after the docstring and the imports at the top of a module
    tree = ast.parse(text)
    at = 0
    for index, node in enumerate(tree.body):
        docstring = (
            index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        )
        if docstring or isinstance(node, (ast.Import, ast.ImportFrom)):
            at = node.end_lineno
        else:
            break
    return at


def _top_level_starts(text: str) -> list[int]:
    # 1-based first lines of top-level statements after the docstring and __future__ imports
    tree = ast.parse(text)
    starts = []
    for index, node in enumerate(tree.body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            starts.clear()
            continue
        decorators = getattr(node, "decorator_list", [])
        starts.append(min([node.lineno] + [d.lineno for d in decorators]))
    return starts


def _public_functions(text: str) -> list[str]:
    tree = ast.parse(text)
    return [
        n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
    ]


def readme(title: str, rng: random.Random) -> str:
    """A short README.md for the repl."""
    blurb = rng.choice(
        (
            "A small project to learn Python.",
            "Un petit projet pour apprendre Python 🐍",
            "用 Python 写的小工具。",
            "My homework for week 3 — don't copy! 😅",
        )
    )
    return f"# {title}\n\n{blurb}\n\n## Usage\n\n```\npython main.py\n```\n"


def requirements(rng: random.Random) -> str:
    """A requirements.txt of a few packages, some pinned."""
    lines = []
    for package in rng.sample(_PACKAGES, rng.randint(1, 4)):
        pin = rng.random() < 0.5
        lines.append(
            f"{package}=={rng.randint(0, 3)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
            if pin
            else package
        )
    return "\n".join(lines) + "\n"


def data_json(rng: random.Random) -> str:
    """A small JSON data file with a few non-ASCII names."""
    people = ("José", "Zoë", "李雷", "Øyvind", "Amélie", "Sam", "Priya", "Ωmega 🌟")
    rows = [{"name": name, "score": rng.randint(0, 100)} for name in rng.sample(people, 4)]
    return json.dumps({"players": rows, "version": 1}, ensure_ascii=False, indent=2) + "\n"


def package_names() -> tuple[str, ...]:
    """Packages users install."""
    return _PACKAGES
