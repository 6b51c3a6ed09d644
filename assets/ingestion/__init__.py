from assets.ingestion.assets import capture_stream, events, events_partitions_job, ingest_job

__all__ = ["capture_stream", "events", "events_partitions_job", "ingest_job"]
