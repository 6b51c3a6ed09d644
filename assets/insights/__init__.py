from assets.insights.assets import (
    SNAPSHOT_PARTITIONS,
    insight_snapshots,
    snapshot_insights_job,
    snapshot_partitions,
)

__all__ = [
    "SNAPSHOT_PARTITIONS",
    "insight_snapshots",
    "snapshot_insights_job",
    "snapshot_partitions",
]
