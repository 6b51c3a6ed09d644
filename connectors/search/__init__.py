"""Search by meaning over a workspace's insights, dashboards, tables and columns, with a
static embedding model that ships inside its wheel (wordllama) and a lexical boost for
the query's exact words. Works with AI assistance off: nothing leaves the process."""
