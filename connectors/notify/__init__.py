"""Alerts: rules on query results, their state machine, and the channels that deliver
notifications (Slack, email, webhook, Teams). Plain Python, used by the API, by Dagster
and by the standalone `sqlbook alerts run`."""
