"""Templates: insights, dashboards, alerts and chart plugins as versioned JSON bundles
(`bundle.py`) and the built-in gallery of them (`gallery.py`)."""
