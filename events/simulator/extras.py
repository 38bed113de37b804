"""What a user does besides editing: names, shell commands, package installs, runs of main.py."""

from __future__ import annotations

import random
import warnings

from .content import package_names

_ADJECTIVES = ("happy", "silent", "quick", "brave", "cosmic", "tiny", "lazy", "neon", "wild")
_NOUNS = ("coder", "panda", "otter", "pixel", "falcon", "turtle", "byte", "comet", "maple")
_TITLES = (
    "SnakeGame",
    "FlaskAPI",
    "Homework3",
    "discord-bot",
    "CalculatorApp",
    "WeatherCLI",
    "TodoList",
    "QuizMaster",
    "DataCleaner",
    "Portfolio",
    "TextAdventure",
    "BankSystem",
)
SHELL_COMMANDS = (
    "ls",
    "ls -la",
    "pip list",
    "git status",
    "git log --oneline",
    "python --version",
    "clear",
    "pwd",
    "cat main.py",
    "git diff",
    "python3 -m pip --version",
    "tree",
)
_MANAGERS = ("pip", "pip", "poetry", "upm")


def owner_name(rng: random.Random) -> str:
    """A username like "quickotter42"."""
    return f"{rng.choice(_ADJECTIVES)}{rng.choice(_NOUNS)}{rng.randint(1, 999)}"


def repl_title(rng: random.Random) -> str:
    """A repl title."""
    title = rng.choice(_TITLES)
    return f"{title}-{rng.randint(2, 9)}" if rng.random() < 0.3 else title


def install(rng: random.Random) -> dict:
    """The fields of a `package_install` event; misspelled package names fail."""
    packages = rng.sample(package_names(), rng.choice((1, 1, 2, 3)))
    status = "success"
    if rng.random() < 0.15:
        name = packages[0]
        i = rng.randrange(1, len(name) - 1)
        packages[0] = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
        status = "error"
    elif rng.random() < 0.05:
        status = "error"  # a network hiccup
    return {"packages": packages, "manager": rng.choice(_MANAGERS), "status": status}


def run_result(main_text: str, runtime_errors: list[tuple[int, str, str]], slug: str) -> dict:
    """The fields of a `run` event of `python main.py` on `main_text`.

    `runtime_errors` lists (0-based line, line text, error) of mistakes known to be in the file.
    """
    where = f"/home/runner/{slug}/main.py"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(main_text, "main.py", "exec", dont_inherit=True)
    except SyntaxError as error:
        text = (error.text or "").rstrip("\n")
        shown = text.strip()
        caret = " " * max(0, (error.offset or 1) - 1 - (len(text) - len(text.lstrip())))
        tail = f'  File "{where}", line {error.lineno}\n    {shown}\n    {caret}^\n'
        kind = type(error).__name__
        return _run(1, f"{tail}{kind}: {error.msg}")
    except ValueError as error:
        return _run(1, f"ValueError: {error}")
    if runtime_errors:
        line, text, message = min(runtime_errors)
        tail = (
            "Traceback (most recent call last):\n"
            f'  File "{where}", line {line + 1}, in <module>\n'
            f"    {text.strip()}\n{message}"
        )
        return _run(1, tail)
    out = [line.split('"')[1] for line in main_text.split("\n") if line.startswith('print("')]
    return _run(0, "\n".join(out[-5:]))


def _run(exit_code: int, output: str) -> dict:
    return {"command": "python main.py", "exit_code": exit_code, "output_tail": output[-2000:]}
