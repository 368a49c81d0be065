"""Seed 003's expression language: one comparison `A op B`, tokenized, parsed once, evaluated.

An expression is parsed when a policy is written; a syntax error raises
`errors.ExpressionSyntaxError` with the 0-based character position. Evaluation
never raises: it answers True, False, or `Unevaluable` with the reason (a
missing path, a type mismatch, a value the gate does not compare).

Typing rules: `null` equals only `null`, and a comparison with
`null` is never a type mismatch (ordering and string operators are then
False); ints and Decimals are one number type, booleans are not numbers;
floats are refused, since money never passes through a float; any other
cross-type comparison is a type mismatch.

Path keys: the exact key is looked up first; when it is absent, its other
spelling (camelCase for snake_case and back) is tried, so `$.principal.agent_id`
reads `agentId` and `$.context.review_count` reads `reviewCount`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from clawguard.core.gate import errors

# A policy is written by an operator, but the parser still bounds its work.
MAX_LENGTH: Final = 2000

ROOTS: Final = frozenset({"arguments", "context", "action", "principal"})
# The fields of the two documents the gate builds itself; a typo here is a write-time error.
ROOT_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "action": frozenset({"connector", "tool", "value"}),
    "principal": frozenset({"agentId", "agent_id", "roles", "scopes"}),
}

COMPARISONS: Final = ("==", "!=", "<", "<=", ">", ">=")
WORD_OPERATORS: Final = ("starts_with", "contains")
KEYWORDS: Final[Mapping[str, object]] = {"true": True, "false": False, "null": None}
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_DIGITS: Final = frozenset("0123456789")
_ESCAPES: Final[Mapping[str, str]] = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


class Kind(enum.Enum):
    DOLLAR = "'$'"
    DOT = "'.'"
    LBRACKET = "'['"
    RBRACKET = "']'"
    NAME = "a key"
    INDEX = "an index"
    NUMBER = "a number"
    STRING = "a string"
    WORD = "a word"
    OPERATOR = "an operator"
    END = "the end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    position: int
    value: object = None


@dataclass(frozen=True, slots=True)
class Unevaluable:
    """An expression or guard that cannot be decided for this document, and why."""

    reason: str


Result = bool | Unevaluable


def _syntax(source: str, position: int, message: str) -> errors.ExpressionSyntaxError:
    return errors.ExpressionSyntaxError("", message, expression=source, position=position)


# -- tokenizer ---------------------------------------------------------------------------------


def tokenize(source: str) -> list[Token]:
    """The tokens of `source`, ending with an END token; raises on a character it cannot read."""
    if not isinstance(source, str):
        raise errors.ExpressionSyntaxError("", "an expression must be a string", position=0)
    if len(source) > MAX_LENGTH:
        raise _syntax(source, MAX_LENGTH, f"an expression is at most {MAX_LENGTH} characters")
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c.isspace():
            i += 1
        elif c == "$":
            i = _path_tokens(source, i, tokens)
        elif c in "'\"":
            i = _string_token(source, i, tokens)
        elif c in _DIGITS or (c == "-" and i + 1 < n and source[i + 1] in _DIGITS):
            i = _number_token(source, i, tokens)
        elif c in "=!<>":
            two = source[i : i + 2]
            if two in ("==", "!=", "<=", ">="):
                tokens.append(Token(Kind.OPERATOR, two, i))
                i += 2
            elif c in "<>":
                tokens.append(Token(Kind.OPERATOR, c, i))
                i += 1
            elif c == "=":
                raise _syntax(source, i, "'=' is not an operator; equality is '=='")
            else:
                raise _syntax(source, i, "'!' is not an operator; inequality is '!='")
        elif c.isascii() and (c.isalpha() or c == "_"):
            i = _word_token(source, i, tokens)
        else:
            raise _syntax(source, i, f"unexpected character {c!r}")
    tokens.append(Token(Kind.END, "", n))
    return tokens


def _path_tokens(source: str, i: int, tokens: list[Token]) -> int:
    # Inside a path, `0.5` is two keys, not a number: the path has its own lexical mode.
    n = len(source)
    tokens.append(Token(Kind.DOLLAR, "$", i))
    i += 1
    while i < n:
        c = source[i]
        if c == ".":
            tokens.append(Token(Kind.DOT, ".", i))
            start = i = i + 1
            while i < n and source[i] in _NAME_CHARS:
                i += 1
            if i == start:
                raise _syntax(source, start, "expected a key after '.'")
            tokens.append(Token(Kind.NAME, source[start:i], start))
        elif c == "[":
            tokens.append(Token(Kind.LBRACKET, "[", i))
            start = i = i + 1
            while i < n and source[i] in _DIGITS:
                i += 1
            if i == start:
                raise _syntax(source, start, "expected a non-negative integer index after '['")
            tokens.append(Token(Kind.INDEX, source[start:i], start, int(source[start:i])))
            if i >= n or source[i] != "]":
                raise _syntax(source, i, "expected ']' to close the index")
            tokens.append(Token(Kind.RBRACKET, "]", i))
            i += 1
        else:
            break
    return i


def _string_token(source: str, i: int, tokens: list[Token]) -> int:
    quote, start, n = source[i], i, len(source)
    chars: list[str] = []
    i += 1
    while i < n:
        c = source[i]
        if c == quote:
            tokens.append(Token(Kind.STRING, source[start : i + 1], start, "".join(chars)))
            return i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            e = source[i + 1]
            if e in _ESCAPES:
                chars.append(_ESCAPES[e])
                i += 2
            elif e == "u":
                digits = source[i + 2 : i + 6]
                if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise _syntax(source, i, "'\\u' needs four hexadecimal digits")
                chars.append(chr(int(digits, 16)))
                i += 6
            else:
                raise _syntax(source, i, f"unknown escape '\\{e}'")
        else:
            chars.append(c)
            i += 1
    raise _syntax(source, start, "unterminated string")


def _number_token(source: str, i: int, tokens: list[Token]) -> int:
    start, n = i, len(source)
    if source[i] == "-":
        i += 1
    while i < n and source[i] in _DIGITS:
        i += 1
    exact = True
    if i + 1 < n and source[i] == "." and source[i + 1] in _DIGITS:
        exact = False
        i += 1
        while i < n and source[i] in _DIGITS:
            i += 1
    if i < n and source[i] in "eE":
        j = i + 1
        if j < n and source[j] in "+-":
            j += 1
        if j < n and source[j] in _DIGITS:
            exact = False
            i = j
            while i < n and source[i] in _DIGITS:
                i += 1
    if i < n and (source[i] in _NAME_CHARS or source[i] == "."):
        raise _syntax(source, i, f"unexpected character {source[i]!r} in a number")
    text = source[start:i]
    try:
        value: int | Decimal = int(text) if exact else Decimal(text)
    except (ValueError, InvalidOperation):
        raise _syntax(source, start, "not a usable number") from None
    tokens.append(Token(Kind.NUMBER, text, start, value))
    return i


def _word_token(source: str, i: int, tokens: list[Token]) -> int:
    start, n = i, len(source)
    while i < n and source[i].isascii() and (source[i].isalnum() or source[i] == "_"):
        i += 1
    word = source[start:i]
    if word in WORD_OPERATORS:
        tokens.append(Token(Kind.OPERATOR, word, start))
    elif word in KEYWORDS:
        tokens.append(Token(Kind.WORD, word, start, KEYWORDS[word]))
    else:
        hint = "; strings are quoted, paths start with '$.'"
        if word.lower() in KEYWORDS or word.lower() in WORD_OPERATORS:
            hint = f"; did you mean {word.lower()!r}?"
        raise _syntax(source, start, f"unknown word {word!r}{hint}")
    return i


# -- parser ------------------------------------------------------------------------------------


def _alternate(key: str) -> str | None:
    """The other spelling of a key: snake_case for camelCase and back; None when there is none."""
    if "_" in key:
        parts = key.split("_")
        if not all(parts) or not key.islower():
            return None
        return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    if key.lower() != key and key[:1].islower():
        return "".join("_" + c.lower() if c.isupper() else c for c in key)
    return None


@dataclass(frozen=True, slots=True)
class _Segment:
    key: str
    alternate: str | None
    index: int | None


_MISSING: Final = object()


class Path:
    """A compiled `$.root.key[0].key` path."""

    __slots__ = ("_segments", "position", "root", "text")

    def __init__(self, text: str, position: int, root: str, segments: tuple[_Segment, ...]) -> None:
        self.text = text
        self.position = position
        self.root = root
        self._segments = segments

    def resolve(self, document: Mapping[str, object]) -> object:
        """The value at this path, or `_MISSING`."""
        current: object = document.get(self.root, _MISSING)
        for segment in self._segments:
            # `type() is dict` first: the ABC check costs more than the lookup itself.
            if type(current) is dict or isinstance(current, Mapping):
                if segment.key in current:
                    current = current[segment.key]
                elif segment.alternate is not None and segment.alternate in current:
                    current = current[segment.alternate]
                else:
                    return _MISSING
            elif (
                isinstance(current, list | tuple)
                and segment.index is not None
                and segment.index < len(current)
            ):
                current = current[segment.index]
            else:
                return _MISSING
        return current


class Constant:
    """A literal operand: a number, a string, true, false or null."""

    __slots__ = ("position", "text", "value")

    def __init__(self, text: str, position: int, value: object) -> None:
        self.text = text
        self.position = position
        self.value = value

    def resolve(self, document: Mapping[str, object]) -> object:
        return self.value


Operand = Path | Constant


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.at = 0

    def next(self) -> Token:
        token = self.tokens[self.at]
        if token.kind is not Kind.END:
            self.at += 1
        return token

    def peek(self) -> Token:
        return self.tokens[self.at]

    def fail(self, token: Token, message: str) -> errors.ExpressionSyntaxError:
        return _syntax(self.source, token.position, message)

    def expression(self) -> tuple[Operand, str, Operand]:
        if self.peek().kind is Kind.END:
            raise self.fail(self.peek(), "an expression is one comparison 'A op B'; it is empty")
        left = self.operand()
        token = self.next()
        if token.kind is not Kind.OPERATOR:
            raise self.fail(
                token,
                f"expected an operator ({', '.join(COMPARISONS + WORD_OPERATORS)}), "
                f"found {_describe(token)}",
            )
        right = self.operand()
        extra = self.peek()
        if extra.kind is not Kind.END:
            raise self.fail(
                extra,
                f"found {_describe(extra)} after the comparison; "
                "an expression is one comparison 'A op B'",
            )
        return left, token.text, right

    def operand(self) -> Operand:
        token = self.next()
        if token.kind is Kind.DOLLAR:
            return self.path(token)
        if token.kind in (Kind.NUMBER, Kind.STRING, Kind.WORD):
            return Constant(token.text, token.position, token.value)
        raise self.fail(
            token,
            "expected an operand (a path, a number, a quoted string, true, false or null), "
            f"found {_describe(token)}",
        )

    def path(self, dollar: Token) -> Path:
        if self.peek().kind is not Kind.DOT:
            raise self.fail(
                dollar, "a path starts with '$.' and a root: arguments, context, action, principal"
            )
        names: list[Token] = []
        segments: list[_Segment] = []
        while True:
            token = self.peek()
            if token.kind is Kind.DOT:
                self.next()
                name = self.next()
                names.append(name)
                index = int(name.text) if name.text.isdigit() else None
                segments.append(_Segment(name.text, _alternate(name.text), index))
            elif token.kind is Kind.LBRACKET:
                self.next()
                index_token = self.next()
                self.next()  # the tokenizer has checked the closing bracket
                names.append(index_token)
                number = int(index_token.text)
                segments.append(_Segment(str(number), None, number))
            else:
                break
        root = names[0].text
        if root not in ROOTS:
            raise self.fail(
                names[0],
                f"unknown root {root!r}; a path starts with "
                "$.arguments, $.context, $.action or $.principal",
            )
        fields = ROOT_FIELDS.get(root)
        if fields is not None and len(names) > 1 and names[1].text not in fields:
            raise self.fail(
                names[1],
                f"$.{root} has no field {names[1].text!r}; it has {', '.join(sorted(fields))}",
            )
        end = self.tokens[self.at - 1]
        text = self.source[dollar.position : end.position + len(end.text)]
        return Path(text, dollar.position, root, tuple(segments[1:]))


def _describe(token: Token) -> str:
    if token.kind is Kind.END:
        return "the end of the expression"
    return f"{token.kind.value} {token.text!r}"


# -- evaluation --------------------------------------------------------------------------------

_NUMBER: Final = "number"
_SUPPORTED: Final = frozenset({"null", "boolean", _NUMBER, "string", "array", "object"})


# The kind of a value by its exact type, the common case; subclasses take the long way.
_KIND_OF_TYPE: Final[Mapping[type, str]] = {
    type(None): "null",
    bool: "boolean",
    int: _NUMBER,
    str: "string",
    dict: "object",
    list: "array",
    tuple: "array",
}


def _kind(value: object) -> str:
    kind = _KIND_OF_TYPE.get(type(value))
    if kind is not None:
        return kind
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return _NUMBER
    if isinstance(value, str):
        return "string"
    if isinstance(value, Decimal):
        return _NUMBER if value.is_finite() else "non-finite number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


_FAST_NUMBERS: Final = frozenset({int, Decimal})


class _Unsupported(Exception):
    pass


def _equal(a: object, b: object) -> bool:
    # Inside arrays and objects a difference of kind is inequality, not a mismatch.
    ka, kb = _kind(a), _kind(b)
    if ka not in _SUPPORTED or kb not in _SUPPORTED:
        raise _Unsupported(ka if ka not in _SUPPORTED else kb)
    if ka != kb:
        return False
    if ka == "array":
        assert isinstance(a, list | tuple) and isinstance(b, list | tuple)
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "object":
        assert isinstance(a, Mapping) and isinstance(b, Mapping)
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _ordered(op: str) -> Callable[[object, object], bool]:
    return {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "starts_with": lambda a, b: a.startswith(b),
        "contains": lambda a, b: b in a,
    }[op]


class Expression:
    """A parsed comparison, evaluated against `{arguments, context, action, principal}`."""

    __slots__ = ("_apply", "_operator", "left", "right", "source")

    def __init__(self, source: str, left: Operand, operator: str, right: Operand) -> None:
        self.source = source
        self.left = left
        self._operator = operator
        self.right = right
        self._apply = None if operator in ("==", "!=") else _ordered(operator)

    @property
    def operator(self) -> str:
        return self._operator

    def evaluate(self, document: Mapping[str, object]) -> Result:
        """True, False, or `Unevaluable`; never raises."""
        try:
            return self._evaluate(document)
        except RecursionError:
            return Unevaluable(f"{self.source}: a value is nested too deeply to compare")
        except Exception as exc:  # the gate fails closed on anything it did not foresee
            return Unevaluable(f"{self.source}: cannot be evaluated ({type(exc).__name__})")

    def _evaluate(self, document: Mapping[str, object]) -> Result:
        a = self.left.resolve(document)
        if a is _MISSING:
            return Unevaluable(f"missing path {self.left.text}")
        b = self.right.resolve(document)
        if b is _MISSING:
            return Unevaluable(f"missing path {self.right.text}")
        op = self._operator
        # The common case first, without the general kind checks: two strings, or two
        # finite numbers (an int, a Decimal) under an operator that takes them.
        ta, tb = type(a), type(b)
        if ta is str and tb is str:
            if op == "==":
                return a == b
            if op == "!=":
                return a != b
            if op in WORD_OPERATORS:
                return self._apply(a, b)  # type: ignore[misc]
        elif (
            ta in _FAST_NUMBERS
            and tb in _FAST_NUMBERS
            and (ta is int or a.is_finite())  # type: ignore[attr-defined]
            and (tb is int or b.is_finite())  # type: ignore[attr-defined]
        ):
            if op == "==":
                return a == b
            if op == "!=":
                return a != b
            if op not in WORD_OPERATORS:
                return self._apply(a, b)  # type: ignore[misc]
        ka, kb = _kind(a), _kind(b)
        for kind, operand in ((ka, self.left), (kb, self.right)):
            if kind not in _SUPPORTED:
                return Unevaluable(
                    f"{operand.text} holds a {kind}, which the gate does not compare"
                )
        if op == "==" or op == "!=":
            if ka == "null" or kb == "null":
                same = ka == kb
            elif ka != kb:
                return self._mismatch(ka, kb)
            else:
                try:
                    same = _equal(a, b)
                except _Unsupported as exc:
                    return Unevaluable(
                        f"{self.source}: holds a {exc}, which the gate does not compare"
                    )
            return same if op == "==" else not same
        if ka == "null" or kb == "null":
            return False
        wanted = "string" if op in WORD_OPERATORS else _NUMBER
        if ka != wanted or kb != wanted:
            return self._mismatch(ka, kb)
        assert self._apply is not None
        return self._apply(a, b)

    def _mismatch(self, ka: str, kb: str) -> Unevaluable:
        return Unevaluable(
            f"type mismatch: {self.left.text} ({ka}) {self._operator} {self.right.text} ({kb})"
        )

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _check_constants(source: str, left: Operand, op: str, right: Operand) -> None:
    # A literal that the operator can never accept is a mistake we can name at write time.
    if op in ("==", "!="):
        if isinstance(left, Constant) and isinstance(right, Constant):
            ka, kb = _kind(left.value), _kind(right.value)
            if "null" not in (ka, kb) and ka != kb:
                raise _syntax(
                    source, right.position, f"type mismatch: {ka} {op} {kb} is never evaluable"
                )
        return
    wanted = "string" if op in WORD_OPERATORS else _NUMBER
    for operand in (left, right):
        if isinstance(operand, Constant):
            kind = _kind(operand.value)
            if kind not in ("null", wanted):
                raise _syntax(
                    source, operand.position, f"{op} compares {wanted}s; {operand.text} is a {kind}"
                )


def parse(source: str) -> Expression:
    """The compiled expression; raises `errors.ExpressionSyntaxError` with the position."""
    parser = _Parser(source)
    left, op, right = parser.expression()
    _check_constants(source, left, op, right)
    return Expression(source, left, op, right)
