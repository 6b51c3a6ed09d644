"""Everything that talks to the outside world, as plain Python (no Dagster, no FastAPI)."""

import os

# dlt sends anonymous usage events to dltHub unless told not to, deciding once, when its
# runtime first starts: a self-hosted analytics tool calls no one home. Set before anything
# (connector syncs, dagster-dlt) imports dlt; an operator's own setting wins.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
