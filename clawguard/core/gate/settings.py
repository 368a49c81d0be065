"""Approval settings (README: Authorize): seed 000's governance object, its PATCH, and
which of a tool's categories they flag for a human approval.

`require_approval_for_X` flags category X exactly as `category_flags.X: true`
does; `approval_threshold` N is the default gate's count (N distinct approvers)
when no matched rule names stages of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final

from clawguard.core import errors

# The registry's categories (core.registry.Category), the only keys category_flags takes.
CATEGORIES: Final = ("external_comm", "public_writes", "permission_changes", "financial", "pii",
                     "other")
# Each require_approval_for_X flag and the category it flags.
REQUIRE: Final = {
    "require_approval_for_external_comm": "external_comm",
    "require_approval_for_public_writes": "public_writes",
    "require_approval_for_permission_changes": "permission_changes",
}
THRESHOLD_MAX: Final = 100
KEYS: Final = (*REQUIRE, "allow_self_approval", "approval_threshold", "category_flags")


@dataclass(frozen=True, slots=True)
class Settings:
    """The settings in force; the defaults are every flag false and a threshold of 1."""

    require_approval_for_external_comm: bool = False
    require_approval_for_public_writes: bool = False
    require_approval_for_permission_changes: bool = False
    allow_self_approval: bool = False
    approval_threshold: int = 1
    category_flags: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))

    def wire(self) -> dict[str, Any]:
        """Seed 000's object, key for key."""
        return {
            "require_approval_for_external_comm": self.require_approval_for_external_comm,
            "require_approval_for_public_writes": self.require_approval_for_public_writes,
            "require_approval_for_permission_changes":
                self.require_approval_for_permission_changes,
            "allow_self_approval": self.allow_self_approval,
            "approval_threshold": self.approval_threshold,
            "category_flags": dict(self.category_flags),
        }

    def flagged(self, categories: Sequence[str]) -> tuple[str, ...]:
        """The categories among `categories` that need an approval, in the order given."""
        required = {category for key, category in REQUIRE.items() if getattr(self, key)}
        return tuple(c for c in categories if c in required or self.category_flags.get(c))


DEFAULTS: Final = Settings()


def from_document(document: Mapping[str, Any] | None) -> Settings:
    """The settings a stored document holds (None: no row yet, the defaults)."""
    if document is None:
        return DEFAULTS
    known = {key: document[key] for key in KEYS if key in document and key != "category_flags"}
    flags = document.get("category_flags") or {}
    return Settings(**known, category_flags=MappingProxyType(dict(flags)))


def check_patch(body: Mapping[str, Any]) -> dict[str, Any]:
    """A PATCH body, checked: an unknown key or a value of the wrong JSON type is malformed
    (400), a threshold below 1 or above THRESHOLD_MAX is refused (422); each names its key.
    `category_flags` takes the registry's categories, each true, false or null (removed);
    null for any setting puts back its default."""
    for key, value in body.items():
        if key not in KEYS:
            raise errors.InvalidInput(f"unknown settings key {key!r}", {"key": key})
        if value is None:
            continue
        if key == "approval_threshold":
            if type(value) is not int:  # bool is an int; 2.0 arrives as a Decimal
                raise errors.InvalidInput(f"{key} must be an integer", {"key": key})
        elif key == "category_flags":
            if not isinstance(value, Mapping):
                raise errors.InvalidInput(f"{key} must be an object", {"key": key})
            for category, flag in value.items():
                name = f"category_flags.{category}"
                if category not in CATEGORIES:
                    raise errors.InvalidInput(
                        f"unknown category {category!r} (one of {', '.join(CATEGORIES)})",
                        {"key": name})
                if flag is not None and not isinstance(flag, bool):
                    raise errors.InvalidInput(f"{name} must be true, false or null",
                                              {"key": name})
        elif not isinstance(value, bool):
            raise errors.InvalidInput(f"{key} must be true or false", {"key": key})
    threshold = body.get("approval_threshold")
    if threshold is not None and not 1 <= threshold <= THRESHOLD_MAX:
        raise errors.Unprocessable(
            f"approval_threshold must be between 1 and {THRESHOLD_MAX}",
            {"key": "approval_threshold", "min": 1, "max": THRESHOLD_MAX})
    return dict(body)


def apply_patch(current: Settings, patch: Mapping[str, Any]) -> Settings:
    """`current` with a checked patch applied; category_flags merge key by key (null
    removes one, a null category_flags removes all), every other key is replaced (null: by
    its default)."""
    flags = {} if "category_flags" in patch and patch["category_flags"] is None else dict(
        current.category_flags)
    for category, flag in (patch.get("category_flags") or {}).items():
        if flag is None:
            flags.pop(category, None)
        else:
            flags[category] = flag
    plain = {key: getattr(DEFAULTS, key) if value is None else value
             for key, value in patch.items() if key != "category_flags"}
    return replace(current, **plain, category_flags=MappingProxyType(flags))
