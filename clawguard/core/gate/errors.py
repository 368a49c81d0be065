"""The gate's refusals of a policy document: each names the field at fault."""

from __future__ import annotations

from typing import Literal

Code = Literal["missing_parameter", "invalid_parameter"]


class InvalidPolicy(ValueError):
    """A policy, rule, guard or expression that is refused when it is written.

    `field` is a path into the document (`rules[2].when.allOf[1]`), `code` is
    seed 002's error code, so the HTTP layer maps this to 400 without reading
    the message.
    """

    def __init__(
        self,
        field: str,
        message: str,
        *,
        code: Code = "invalid_parameter",
        expression: str | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.code: Code = code
        self.expression = expression
        self.position = position

    def within(self, prefix: str) -> InvalidPolicy:
        """The same refusal, its field seen from the document that holds this part."""
        if not self.field:
            field = prefix
        elif self.field.startswith("["):
            field = prefix + self.field
        else:
            field = f"{prefix}.{self.field}"
        return type(self)(
            field,
            self.message,
            code=self.code,
            expression=self.expression,
            position=self.position,
        )


class ExpressionSyntaxError(InvalidPolicy):
    """An expression that does not parse; `position` is the 0-based character offset."""

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{where}{self.message} at position {self.position} in {self.expression!r}"
