"""Insights: saved queries with typed, named parameters (issue 12).

`parameters` says what each parameter accepts and resolves one run's values;
`compiler` turns `{{name}}` SQL into `$n` SQL and the values the one executor binds.
"""

from connectors.insights.compiler import CompiledSql, compile_sql
from connectors.insights.parameters import (
    DateRange,
    InvalidParameter,
    OptionsFromInsight,
    ParameterList,
    ParameterSpec,
    resolve,
)

__all__ = [
    "CompiledSql",
    "DateRange",
    "InvalidParameter",
    "OptionsFromInsight",
    "ParameterList",
    "ParameterSpec",
    "compile_sql",
    "resolve",
]
