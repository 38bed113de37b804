"""Session simulator: realistic hosted-IDE event logs written from a corpus of real Python code."""

from .jsonl import write_jsonl
from .long_session import long_session
from .simulate import simulate

__all__ = ["long_session", "simulate", "write_jsonl"]
