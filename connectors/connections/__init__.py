"""Connector syncs (Stripe, Google Analytics 4): what the API and Dagster share —
credential checks, warehouse tables, the dlt destination. See README "Connectors"."""
