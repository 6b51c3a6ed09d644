"""Assistive AI (issue 18): question → checked SQL suggestion, schema hints, answers.

Off until `SQLBOOK_AI_URL` is set: nothing leaves the installation before. The model only
ever proposes text; every statement it proposes goes through the same guard as
`/api/query`, sqlglot, and an EXPLAIN under the asker's scope before anyone sees it, and
nothing runs until a person presses Run (then through the one executor).
"""
