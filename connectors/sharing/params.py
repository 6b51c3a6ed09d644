"""The parameter values a shared view fixes or limits.

A public link's owner fixes some values (`locked_params` {name: value}) and may limit
others to a list (`allowed_params` {name: [values]}); a signed embed's `params` claim is
locked values. The names are an insight's parameters or a dashboard's filters. A visitor
may set the others freely (as on the insight page, `p.<name>=…`; a dashboard's filters
`f.<name>=…`); giving a locked one is refused, naming it, and so is a value outside its
list. A limited parameter the visitor leaves unset takes the first value of its list
(its own default may not be one the owner allowed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.insights.parameters import InvalidParameter, ParameterSpec, resolve

MAX_CHOICES = 100


def check_link_params(
    specs: Sequence[ParameterSpec],
    locked: Mapping[str, Any],
    allowed: Mapping[str, Sequence[Any]],
    *,
    time_zone: str = "UTC",
) -> None:
    """Raises InvalidParameter naming `locked_params.<name>` / `allowed_params.<name>`
    for a name the object does not have, a value its parameter refuses, an empty or too
    long list, or a name both locked and limited."""
    by_name = {s.name: s for s in specs}
    for field, given in (("locked_params", locked), ("allowed_params", allowed)):
        for name in given:
            if name not in by_name:
                raise InvalidParameter(f"{field}.{name}", "no such parameter")
    for name, value in locked.items():
        _check_value(by_name[name], value, f"locked_params.{name}", time_zone)
    for name, choices in allowed.items():
        where = f"allowed_params.{name}"
        if name in locked:
            raise InvalidParameter(where, "is locked too: a parameter is locked or limited")
        if not isinstance(choices, list) or not choices:
            raise InvalidParameter(where, "expected a non-empty list of values")
        if len(choices) > MAX_CHOICES:
            raise InvalidParameter(where, f"at most {MAX_CHOICES} values")
        spec = by_name[name]
        for choice in choices:
            if not isinstance(choice, str | int | float | bool):
                raise InvalidParameter(where, "each value must be a text, number or boolean")
            _check_value(spec, [choice] if spec.multi else choice, where, time_zone)


def _check_value(spec: ParameterSpec, value: Any, where: str, time_zone: str) -> None:
    try:
        resolve([spec], {spec.name: value}, time_zone=time_zone)
    except InvalidParameter as err:
        raise InvalidParameter(where, err.message.removeprefix(f"{err.parameter}: ")) from None


def visitor_params(
    given: Mapping[str, Any],
    locked: Mapping[str, Any],
    allowed: Mapping[str, Sequence[Any]],
    *,
    prefix: str = "p.",
) -> dict[str, Any]:
    """The values a shared view runs with: the visitor's `given` (as params_from_query
    reads them), checked against the link's rules, with the locked values over them and
    each limited parameter left unset at its first choice. Raises InvalidParameter
    naming `<prefix><name>`."""
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name in locked:
            raise InvalidParameter(f"{prefix}{name}", "is locked by the link: it cannot be set")
        choices = allowed.get(name)
        if choices is not None:
            wanted = value if isinstance(value, list) else [value]
            if not [one for one in wanted if one not in (None, "")]:
                # unset would drop the parameter's clause: every value, not a chosen one
                raise InvalidParameter(
                    f"{prefix}{name}", "cannot be unset: pick one of the values the link allows"
                )
            shown = {_text(c) for c in choices}
            for one in wanted:
                if _text(one) not in shown:
                    raise InvalidParameter(
                        f"{prefix}{name}",
                        f"{_text(one)!r} is not one of the values the link allows",
                    )
        values[name] = value
    for name, choices in allowed.items():
        if name not in values and choices:
            values[name] = choices[0]
    values.update(locked)
    return values


def _text(value: Any) -> str:
    """How a value compares with a choice: as the URL writes it (true/false, numbers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
