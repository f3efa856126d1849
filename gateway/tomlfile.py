"""TOML files validated by pydantic: the shared strict model config (unknown keys are errors, values
are not coerced), reading with errors that name the file, and validation errors that name the
key path and what is allowed there. Used by the gateway config and the policy file.

Imports: errors, trusted.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.errors import ConfigError
from gateway.trusted import read_trusted

Model = TypeVar("Model", bound=BaseModel)


#: The model config of every file model: unknown keys are errors, values are not coerced,
#: instances are frozen. (A config, not a base class, so that each module's models derive from
#: `BaseModel` directly, which linters read as a pydantic model.)
STRICT: Final = ConfigDict(extra="forbid", frozen=True, strict=True)


def read_toml(path: Path, what: str, error: type[ConfigError]) -> dict[str, Any]:
    """The TOML document in `path` (`what` names it in errors, e.g. "policy file").

    Raises:
        error: the file cannot be read, may be written by group or others, is not UTF-8, or is
            not valid TOML.
    """
    try:
        text = read_trusted(path, what, error).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def validate(model: type[Model], raw: dict[str, Any], source: str, error: type[ConfigError]) -> Model:
    """`raw` as a `model`.

    Raises:
        error: one line per problem, as `format_validation_error` writes them.
    """
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(format_validation_error(exc, source, model)) from None


def format_validation_error(exc: ValidationError, source: str, root: type[BaseModel]) -> str:
    """One line per problem: `source: key.path: what is wrong (what to write instead)`."""
    lines = []
    for problem in exc.errors():
        loc = tuple(problem["loc"])
        path = ".".join(str(part) for part in loc) or "(top level)"
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(root, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            hint += f" (allowed here: {', '.join(allowed)})" if allowed else ""
            lines.append(f"{source}: {path}: unknown key{hint}")
        else:
            lines.append(f"{source}: {path}: {problem['msg']}")
    return "\n".join(lines)


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at `loc`, walking models and dict values."""
    current: Any = root
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        else:
            return []
        current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(models[0]) if len(models) == 1 else annotation
    return annotation
