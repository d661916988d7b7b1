"""Validating typed configs: one error message format for every pydantic model in mixlab."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mixlab.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


def format_validation_error(exc: ValidationError, where: str) -> str:
    """One line per bad field: ``<where>: <field.path>: <what is wrong>``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field; check the spelling"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "value_error":  # a validator's own message, without pydantic's prefix
            msg = msg.removeprefix("Value error, ")
        parts.append(f"{where}: {loc}: {msg}")
    return "\n".join(parts)


def parse_config(model: type[ModelT], data: Any, where: str) -> ModelT:
    """Validate ``data`` against ``model``; a failure is a :class:`ConfigError` naming ``where`` and
    each bad field, so a user sees which file and key to fix rather than a pydantic traceback."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None
