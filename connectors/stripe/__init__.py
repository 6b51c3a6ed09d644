"""Stripe: webhook signatures now; the dlt source and event handling join here (issue 13)."""
