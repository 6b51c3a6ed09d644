"""Stripe: the read client, webhook signatures, the warehouse tables, the credential check
and the dlt source and sync (README "Connectors")."""
