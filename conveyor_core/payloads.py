"""The data converter every Conveyor worker and the API use: Temporal's default, with
dataclasses decoded from a cache of their fields' type hints.

Temporal's JSON converter resolves a dataclass's type hints (`typing.get_type_hints`, which
evaluates every string annotation again) each time it decodes one, for every activity input,
every result the workflow reads and every nested dataclass in them. The hints of a class do
not change, so they are resolved once per class here; the JSON on the wire is unchanged, and
a client with the default converter reads it alike.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import typing
from typing import Any

from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)

FieldHints = tuple[tuple[str, Any, bool], ...]


@functools.lru_cache(maxsize=1024)  # bounded: the workflow sandbox may create classes per run
def _field_hints(cls: type) -> FieldHints:
    """(name, hint, taken by the constructor) of each field.

    Resolved in the globals of the module that defined the class (its generated `__init__`
    keeps them), not through `sys.modules`: inside the workflow sandbox that is the
    sandbox's own, which lacks the modules passed through to it."""
    init = cls.__init__  # type: ignore[misc]
    module_globals = getattr(init, "__globals__", None) or vars(sys.modules[cls.__module__])
    hints = typing.get_type_hints(cls, globalns=module_globals)
    return tuple((f.name, hints[f.name], f.init) for f in dataclasses.fields(cls))


class CachedDataclassConverter(JSONTypeConverter):
    """Decodes a JSON object into a dataclass as Temporal does (unknown keys ignored, each
    field converted to its hint, fields outside the constructor set after it), with the
    hints resolved once per class."""

    def to_typed_value(self, hint: type, value: Any) -> Any | None:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            return JSONTypeConverter.Unhandled  # Temporal's decoding says why it cannot
        converters = [self]
        taken: dict[str, Any] = {}
        later: dict[str, Any] = {}
        for name, field_hint, init in _field_hints(hint):
            if name in value:
                converted = value_to_type(field_hint, value[name], converters)
                (taken if init else later)[name] = converted
        decoded = hint(**taken)
        for name, converted in later.items():
            object.__setattr__(decoded, name, converted)  # frozen dataclasses too
        return decoded


class ConveyorPayloadConverter(CompositePayloadConverter):
    def __init__(self) -> None:
        super().__init__(
            *(
                JSONPlainPayloadConverter(custom_type_converters=[CachedDataclassConverter()])
                if isinstance(c, JSONPlainPayloadConverter)
                else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


DATA_CONVERTER = dataclasses.replace(
    DataConverter.default, payload_converter_class=ConveyorPayloadConverter
)
