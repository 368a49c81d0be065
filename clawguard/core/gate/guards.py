"""Guards: expr, allOf, anyOf, not and role, compiled once, decided without raising.

An operand that cannot be evaluated anywhere in a guard makes the whole guard
unevaluable: every branch is evaluated, none short-circuits, so a guard's
answer never depends on the order of its branches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from clawguard.core.gate import errors, expressions

# Deeper nesting than this is refused at write time; it also bounds evaluation's recursion.
MAX_DEPTH: Final = 16

_LISTS: Final[Mapping[str, str]] = {
    "allOf": "allOf",
    "all_of": "allOf",
    "anyOf": "anyOf",
    "any_of": "anyOf",
}
FORMS: Final = ("expr", "allOf", "anyOf", "all_of", "any_of", "not", "role")

Result = expressions.Result


class Guard(Protocol):
    """A compiled guard; `evaluate` answers True, False or `expressions.Unevaluable`.

    An `expr` guard is its `expressions.Expression` itself: no wrapper on the hot path.
    """

    def evaluate(self, document: Mapping[str, object]) -> Result: ...


class AllOf:
    __slots__ = ("guards",)

    def __init__(self, guards: tuple[Guard, ...]) -> None:
        self.guards = guards

    def evaluate(self, document: Mapping[str, object]) -> Result:
        results = [g.evaluate(document) for g in self.guards]
        for result in results:
            if result is not True and result is not False:
                return result
        return all(results)


class AnyOf:
    __slots__ = ("guards",)

    def __init__(self, guards: tuple[Guard, ...]) -> None:
        self.guards = guards

    def evaluate(self, document: Mapping[str, object]) -> Result:
        results = [g.evaluate(document) for g in self.guards]
        for result in results:
            if result is not True and result is not False:
                return result
        return any(results)


class Not:
    __slots__ = ("guard",)

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def evaluate(self, document: Mapping[str, object]) -> Result:
        result = self.guard.evaluate(document)
        if result is True or result is False:
            return not result
        return result


class Role:
    """The principal holds this role; a principal without roles holds none."""

    __slots__ = ("role",)

    def __init__(self, role: str) -> None:
        self.role = role

    def evaluate(self, document: Mapping[str, object]) -> Result:
        principal = document.get("principal")
        if type(principal) is not dict and not isinstance(principal, Mapping):
            return False
        roles = principal.get("roles")
        if type(roles) is tuple or type(roles) is list:
            return self.role in roles
        return isinstance(roles, Sequence) and not isinstance(roles, str) and self.role in roles


def compile_guard(document: object, *, _depth: int = 0) -> Guard:
    """The compiled guard; raises `errors.InvalidPolicy` whose field is the path to the bad part.

    The path is relative (`allOf[1].not`), empty for the guard itself; callers
    prefix it with `InvalidPolicy.within`.
    """
    if _depth > MAX_DEPTH:
        raise errors.InvalidPolicy("", f"guards nest at most {MAX_DEPTH} levels deep")
    if isinstance(document, str):
        return _expr(document, "")
    if not isinstance(document, Mapping):
        raise errors.InvalidPolicy(
            "", "a guard is an expression string or an object with one of " + ", ".join(FORMS)
        )
    if len(document) != 1:
        keys = ", ".join(sorted(str(k) for k in document)) or "none"
        raise errors.InvalidPolicy(
            "", f"a guard has exactly one of {', '.join(FORMS)}; this one has {keys}"
        )
    ((form, body),) = document.items()
    if form == "expr":
        if not isinstance(body, str):
            raise errors.InvalidPolicy("expr", "must be an expression string")
        return _expr(body, "expr")
    if form in _LISTS:
        if not isinstance(body, list) or not body:
            raise errors.InvalidPolicy(form, "must be a non-empty list of guards")
        children: list[Guard] = []
        for i, child in enumerate(body):
            try:
                children.append(compile_guard(child, _depth=_depth + 1))
            except errors.InvalidPolicy as exc:
                raise exc.within(f"{form}[{i}]") from None
        return AllOf(tuple(children)) if _LISTS[form] == "allOf" else AnyOf(tuple(children))
    if form == "not":
        try:
            return Not(compile_guard(body, _depth=_depth + 1))
        except errors.InvalidPolicy as exc:
            raise exc.within("not") from None
    if form == "role":
        if not isinstance(body, str) or not body:
            raise errors.InvalidPolicy("role", "must be a non-empty role name")
        return Role(body)
    raise errors.InvalidPolicy("", f"unknown guard {form!r}; a guard is one of {', '.join(FORMS)}")


def _expr(source: str, field: str) -> expressions.Expression:
    try:
        return expressions.parse(source)
    except errors.InvalidPolicy as exc:
        if not field:
            raise
        raise exc.within(field) from None
