"""Product analytics on the warehouse: sessions, daily rollups, data retention (part A),
and the query builders that compile trends / funnel / retention / paths / sessions
definitions to one SQL statement each."""
