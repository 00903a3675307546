"""Settings live in one frozen dataclass each (pure, holding the defaults); a resource mirrors it by field name."""

from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def from_fields(cls: type[T], source: object, **overrides: Any) -> T:
    """An instance of the dataclass ``cls`` from ``source``'s attributes of the same names (``overrides`` win)."""
    return cls(**{field.name: getattr(source, field.name) for field in fields(cls)} | overrides)
