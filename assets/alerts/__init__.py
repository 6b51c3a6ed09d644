from assets.alerts.assets import (
    ALERT_PARTITIONS,
    alert_evaluations,
    alert_partitions,
    evaluate_alerts_job,
)

__all__ = ["ALERT_PARTITIONS", "alert_evaluations", "alert_partitions", "evaluate_alerts_job"]
