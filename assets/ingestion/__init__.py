from assets.ingestion.assets import capture_stream, events, ingest_job, persons
from assets.ingestion.maintenance import events_partitions_job, prune_ingestion_runs_job

__all__ = [
    "capture_stream",
    "events",
    "events_partitions_job",
    "ingest_job",
    "persons",
    "prune_ingestion_runs_job",
]
