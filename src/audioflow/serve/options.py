"""HTTP query parameters made from the stages' option declarations (:class:`~audioflow.pipeline.Option`): the
type, default, bounds, allowed values and description of ``?beam_size=`` are those of the ``transcribe``
stage's ``beam_size``, in the request's validation and in the OpenAPI schema alike."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query

from ..pipeline import STAGES, Option

_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


def query_options(stage: str, *names: str, defaults: dict[str, Any] | None = None) -> Callable[..., dict[str, Any]]:
    """A FastAPI dependency taking the options ``names`` of ``stage`` as query parameters and returning
    ``{name: value}``. ``defaults`` replaces a stage default where the endpoint's differs. Only options the
    stage declares ``remote`` can be named (never a server path or a file the stage would write)."""
    options = STAGES.find(stage).options
    parameters = []
    for name in names:
        option = options[name]
        if not option.remote:
            raise ValueError(f"{stage}:{name} is not for remote clients")
        default = (defaults or {}).get(name, option.default)
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=_annotation(option, default)))

    def dependency(**values: Any) -> dict[str, Any]:
        return values

    dependency.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    dependency.__name__ = f"{stage}_options"
    return dependency


def _annotation(option: Option, default: Any) -> Any:
    kind: Any = _TYPES[option.type]
    if default is None:
        kind = kind | None
    pattern = None
    if option.choices:
        pattern = "^(" + "|".join(option.choices) + ")$"
    elif option.pattern:
        pattern = f"^(?:{option.pattern})$"
    query = Query(description=option.describe(), ge=option.ge, gt=option.gt, le=option.le, lt=option.lt,
                  max_length=option.max_length, pattern=pattern)
    return Annotated[kind, query]
