"""Parameters renamed under the naming rule of docs/architecture.md keep their old names for one release."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ParameterError

F = TypeVar("F", bound=Callable[..., Any])


def renamed(**old_to_new: str) -> Callable[[F], F]:
    """A decorator: keyword arguments given under an old name still work, with a DeprecationWarning that
    names the new one (``@renamed(target_sr="sample_rate")``)."""

    def wrap(function: F) -> F:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise ParameterError(f"give {new!r} (the new name of {old!r}), not both")
                    warnings.warn(f"{function.__qualname__.removesuffix('.__init__')}: {old!r} is now {new!r}; the "
                                  "old name goes away in the next release", DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap
