"""What a user means a file to become: its blocks of lines, and where each block sits in the file now."""

from __future__ import annotations

import ast
import itertools

MIN_BLOCK_CHARS = 160  # tiny statements (imports, constants) are typed as one block
SPLIT_CLASS_LINES = 40  # a longer class is typed method by method


def statement_ends(text: str) -> dict[int, tuple[int, str | None]]:
    """Lines (1-based) that end a simple statement: safe places to add a line after.

    Each maps to the statement's indent and the name it assigns, if it assigns one.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    lines = text.split("\n")
    ends = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not hasattr(node, "body"):
            first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
            # a line continued by a backslash or holding several statements is not a clean end
            clean = not last.rstrip().endswith("\\") and ";" not in last
            if clean and first[: node.col_offset].strip() == "":
                target = node.targets[0] if isinstance(node, ast.Assign) else None
                name = target.id if isinstance(target, ast.Name) else None
                ends[node.end_lineno] = (node.col_offset, name)
    return ends


def split_blocks(text: str, min_chars: int = MIN_BLOCK_CHARS) -> list[list[str]]:
    """`text` (ending in a newline) cut into blocks of whole lines at statement starts.

    Blocks shorter than `min_chars` are merged with the next one.
    """
    lines = text.split("\n")[:-1]
    starts = {1}
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = None
    if tree is not None:
        for node in tree.body:
            starts.add(_first_line(node))
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno > SPLIT_CLASS_LINES:
                starts.update(_first_line(child) for child in node.body[1:])
    cuts = []
    for start in sorted(starts):
        # comments right above a statement belong to it
        while start > 1 and start - 1 not in starts and lines[start - 2].lstrip().startswith("#"):
            start -= 1
        if not cuts or start > cuts[-1]:
            cuts.append(start)
    cuts.append(len(lines) + 1)
    blocks = [lines[a - 1 : b - 1] for a, b in itertools.pairwise(cuts) if b > a]
    merged: list[list[str]] = []
    for block in blocks:
        if merged and sum(len(line) + 1 for line in merged[-1]) < min_chars:
            merged[-1] = merged[-1] + block
        else:
            merged.append(block)
    return merged


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno] + [d.lineno for d in decorators])


class FilePlan:
    """The intended text of a file as blocks, with how many lines of each are in the file now."""

    def __init__(self, text: str, min_block_chars: int = MIN_BLOCK_CHARS) -> None:
        self.text = text
        self.blocks = split_blocks(text, min_block_chars)
        self.ends = statement_ends(text)
        self.first_line: list[int] = []  # 1-based line of each block in the intended text
        line = 1
        for block in self.blocks:
            self.first_line.append(line)
            line += len(block)
        self.present = [0] * len(self.blocks)  # lines of each block now in the file
        self.delivered = [False] * len(self.blocks)

    def block_text(self, index: int) -> str:
        """The intended text of block `index`."""
        return "".join(line + "\n" for line in self.blocks[index])

    def start_of(self, index: int) -> int:
        """0-based line where block `index` starts (or would be inserted) in the file now."""
        return sum(self.present[:index])

    def pending(self) -> list[int]:
        """Blocks not typed yet, in order."""
        return [i for i, done in enumerate(self.delivered) if not done]
