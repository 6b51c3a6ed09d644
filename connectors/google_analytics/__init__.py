"""Google Analytics 4: service-account auth, the Data API client, report specs, the dlt
source that lands reports in the warehouse's `ga4` schema, the sync and the credential check.
See README "Connectors"."""
