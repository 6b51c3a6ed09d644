"""One full Stripe sync in a process of its own, for the `connectors` bench phase:
`python -m tests.bench.connector_sync_worker <connection id>` with the SQLBOOK_*
environment; prints one JSON line (objects, seconds, rows per table, peak RSS)."""

from __future__ import annotations

import json
import resource
import sys
import time

import psutil


def _peak_rss_kb() -> int:
    """This process's peak RSS. Not `ru_maxrss`: Linux carries the exec'ing parent's
    high-water mark into it (subprocess vforks, so a child of a 500 MB bench reports at
    least 500 MB); VmHWM is this process's own."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(connection_id: int) -> None:
    from connectors.metadata.connections import ConnectionStore
    from connectors.metadata.store import MetadataStore
    from connectors.secrets import SecretBox, load_secret_key
    from connectors.settings import Settings
    from connectors.stripe.sync import sync_stripe

    settings = Settings()
    assert settings.database_url and settings.warehouse_url
    box = SecretBox(load_secret_key(settings))
    with MetadataStore(settings.database_url, max_size=2) as metadata:
        record = ConnectionStore(metadata, box).get_any(connection_id)
        assert record is not None, connection_id
        store = ConnectionStore(metadata, box)
        start_rss = psutil.Process().memory_info().rss
        deadline = time.monotonic() + 300
        while True:  # a sync the sensor started before the connection was paused ends first
            with store.sync_lock(connection_id) as held:
                if held:
                    began = time.perf_counter()
                    report = sync_stripe(
                        record,
                        record.secrets(box),
                        settings=settings,
                        warehouse_url=settings.warehouse_url,
                        mode="full",
                    )
                    seconds = time.perf_counter() - began
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"connection {connection_id}: its sync lock stayed held")
            time.sleep(1)
    peak_kb = _peak_rss_kb()
    rows = dict(report.rows)
    print(
        json.dumps(
            {
                "objects": rows.get("charges", 0) + rows.get("customers", 0),
                "seconds": seconds,
                "rows": rows,
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "start_rss_mb": round(start_rss / 2**20, 1),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
