"""Bounded evaluation of the expressions a settings file holds: literals, names, ``+ - *``.

A settings file is read, not run, yet literals alone can ask for too much: ``'a' * 10**20``
overflows, ``'a' * 10**11`` exhausts memory, ``1+1+...`` with 100,000 terms exhausts the stack
(each written out in digits: ``**`` is not read).
The size of every result is checked before it is built, and nesting depth and node count are
bounded, so any file ends in a message for its line instead of a traceback or a machine out of
memory.
"""

from __future__ import annotations

import ast
import io
import tokenize
from typing import Any, Callable

MAX_FILE_SIZE = 1 << 20  # bytes of a settings file (iRedMail's is about 2 KiB)
MAX_DEPTH = 100  # nested expressions in one statement
MAX_NODES = 200_000  # expressions evaluated in one file
MAX_VALUE_SIZE = 1 << 20  # characters or items in one value, nested ones included
MAX_TOTAL_SIZE = 16 << 20  # characters or items built while reading one file
MAX_INT_BITS = 1024  # repr() of a larger int may even fail (4300-digit limit)

_SEQUENCES = (str, bytes, list, tuple)
_CONTAINERS: dict[type, Callable[[list], Any]] = {ast.List: list, ast.Tuple: tuple, ast.Set: set}
_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
}


class Unsupported(Exception):
    """Why a statement cannot be read; the caller adds the file, line and name."""


class Exhausted(Unsupported):
    """The whole file's budget is spent: reading stops here (each further statement would cost
    as much again before failing)."""


def too_large() -> Unsupported:
    return Unsupported(f"value too large: more than {MAX_VALUE_SIZE} characters or items")


def measure(value: Any, limit: int = MAX_VALUE_SIZE) -> int:
    """Characters and items of ``value``, nested ones included; stops counting past ``limit``."""
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, (str, bytes)):
            total += max(len(item), 1)
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 1 + len(item)
            pending.extend(item)
        elif isinstance(item, dict):
            total += 1 + len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        else:
            total += 1
    return total


def _is_int(value: Any) -> bool:
    return isinstance(value, int)  # bool included: True * 'a' is 'a'


def result_size(op: ast.operator, left: Any, right: Any) -> int:
    """The size of ``left op right`` before computing it; Unsupported when over a bound."""
    if _is_int(left) and _is_int(right):
        bits = (
            left.bit_length() + right.bit_length()
            if isinstance(op, ast.Mult)
            else max(left.bit_length(), right.bit_length()) + 1
        )
        if bits > MAX_INT_BITS:
            raise Unsupported(f"number too large: more than {MAX_INT_BITS} bits")
        return 1
    if isinstance(op, ast.Mult):
        sequence, count = (left, right) if _is_int(right) else (right, left)
        if not (_is_int(count) and isinstance(sequence, _SEQUENCES)):
            return 1  # floats, or a TypeError the operation itself raises
        if count > MAX_VALUE_SIZE:  # even '' * 10**20 raises OverflowError
            raise too_large()
        return measure(sequence) * max(count, 0)
    return measure(left) + measure(right)


def check_int(value: int) -> int:
    if value.bit_length() > MAX_INT_BITS:
        raise Unsupported(f"number too large: more than {MAX_INT_BITS} bits")
    return value


class Evaluator:
    """Evaluates expression nodes of one file; ``lookup(name)`` gives a name's current value."""

    def __init__(self, lookup: Callable[[str], Any]):
        self._lookup = lookup
        self._nodes = 0
        self._built = 0

    def evaluate(self, node: ast.AST, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise Unsupported(f"expression nested more than {MAX_DEPTH} levels deep")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise Unsupported(f"more than {MAX_NODES} values and operators in the file")
        if isinstance(node, ast.Name):
            return self._lookup(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left = self.evaluate(node.left, depth + 1)
            right = self.evaluate(node.right, depth + 1)
            self._charge(result_size(node.op, left, right))
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.evaluate(node.operand, depth + 1)
            if isinstance(operand, bool) or not isinstance(operand, (int, float, complex)):
                raise Unsupported("only literal values can be used here")
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.evaluate(e, depth + 1) for e in node.elts]
            return self._literal(_CONTAINERS[type(node)](items))
        if isinstance(node, ast.Dict):
            if any(key is None for key in node.keys):
                raise Unsupported("only literal values can be used here")  # {**other}
            pairs = [(self.evaluate(k, depth + 1), self.evaluate(v, depth + 1)) for k, v in zip(node.keys, node.values)]
            return self._literal(dict(pairs))
        if isinstance(node, ast.Constant):
            return check_int(node.value) if _is_int(node.value) else node.value
        try:
            return ast.literal_eval(node)  # what is left of literals: set()
        except ValueError:
            raise Unsupported("only literal values can be used here") from None

    def grown(self, container: Any, added: Any) -> Any:
        """``container`` after ``added`` went in (NAME.append, NAME[key] = ...), when within the
        bounds. The whole is not measured again: a file appending 10,000 times stays linear;
        charging what went in bounds the nested size all the same."""
        if len(container) > MAX_VALUE_SIZE:
            raise too_large()
        self._charge(measure(added))
        return container

    def _literal(self, container: Any) -> Any:
        """A container written in the file, whose items may be large values named in it."""
        size = measure(container)
        if size > MAX_VALUE_SIZE:
            raise too_large()
        # Charged whole: measuring walks every nested item, so a file naming one large value
        # again and again must run into the total bound, not into hours of measuring.
        self._charge(size)
        return container

    def _charge(self, size: int) -> None:
        if size > MAX_VALUE_SIZE:
            raise too_large()
        self._built += size
        if self._built > MAX_TOTAL_SIZE:
            raise Exhausted(f"the file builds more than {MAX_TOTAL_SIZE} characters or items in all")


def deep_statement(text: str | bytes) -> tuple[int, str]:
    """(first line, first name) of the first statement nested or chained deeper than MAX_DEPTH,
    else (1, ''): what to name when the parser itself gave up (RecursionError or MemoryError,
    which carry no line). The tokenizer is not recursive, so it gets through."""
    stream = io.BytesIO(text).readline if isinstance(text, bytes) else io.StringIO(text).readline
    reader = tokenize.tokenize(stream) if isinstance(text, bytes) else tokenize.generate_tokens(stream)
    operators = [0]  # operators chained at each open bracket level, the statement's own first
    start, name = 0, ""
    try:
        for token in reader:
            if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                operators, start, name = [0], 0, ""
                continue
            if token.type in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING):
                continue
            if not start:
                start, name = token.start[0], token.string if token.type == tokenize.NAME else ""
            if token.type != tokenize.OP:
                continue
            if token.string in ("(", "[", "{"):
                operators.append(0)
            elif token.string in (")", "]", "}"):
                operators = operators[:-1] or [0]
            elif token.string in (",", ":", ";") or token.string.endswith("="):
                operators[-1] = 0  # a new item or statement; '=' and '+=' start a value
            else:
                operators[-1] += 1
            if len(operators) - 1 + sum(operators) > MAX_DEPTH:
                return start, name
    except (tokenize.TokenError, SyntaxError):
        pass
    return 1, ""
