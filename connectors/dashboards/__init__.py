"""Dashboards (issue 15): tiles of insights on a grid, global filters mapped onto the
tiles' parameters, running every tile through the one executor, rendering the whole
dashboard to PNG/PDF without a browser, and subscriptions that deliver it."""
