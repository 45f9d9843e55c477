"""Griffe extension (`mkdocs.yml`, mkdocstrings `extensions`): a class attribute without a docstring gets its
comment as one, so the API reference shows what each config field means. saferl's configs document a field by
a comment on its line or by comment lines right above it (STYLE.md: "a one-line comment per field"):

    discounting: float = 0.97  # γ of the reward value
    # CNN on the image of dict observations ...
    encoder: PixelEncoderConfig = PixelEncoderConfig()
"""

from __future__ import annotations

import ast
import tokenize
from io import StringIO

import griffe


def _trailing_comment(line: str) -> str | None:
    """The `# ...` comment that ends a line of code (a `#` inside a string does not count)."""
    try:
        tokens = list(tokenize.generate_tokens(StringIO(line).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    comments = [token.string for token in tokens if token.type == tokenize.COMMENT]
    return comments[-1].lstrip("#").strip() if comments else None


def field_comment(lines: list[str], lineno: int, endlineno: int) -> str | None:
    """The comment lines directly above line `lineno` (1-based) and the comment ending line `endlineno`,
    joined; None when there are none."""
    above = []
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith("#"):
        above.insert(0, lines[index].strip().lstrip("#").strip())
        index -= 1
    trailing = _trailing_comment(lines[endlineno - 1])
    parts = [" ".join(above)] if above else []
    if trailing:
        parts.append(trailing)
    return "\n\n".join(parts) or None


class FieldComments(griffe.Extension):
    def on_attribute_instance(
        self,
        *,
        node: ast.AST | griffe.ObjectNode,
        attr: griffe.Attribute,
        agent: griffe.Visitor | griffe.Inspector,
        **kwargs,
    ) -> None:
        if attr.docstring is not None or not attr.parent or not attr.parent.is_class or attr.lineno is None:
            return
        try:
            lines = attr.lines_collection[attr.filepath]
        except (KeyError, TypeError):
            return
        comment = field_comment(lines, attr.lineno, attr.endlineno or attr.lineno)
        if comment:
            attr.docstring = griffe.Docstring(comment, lineno=attr.lineno, endlineno=attr.endlineno, parent=attr)
