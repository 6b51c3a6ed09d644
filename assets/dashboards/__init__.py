from assets.dashboards.assets import (
    SUBSCRIPTION_PARTITIONS,
    dashboard_subscriptions,
    deliver_dashboard_subscriptions_job,
    subscription_partitions,
    subscription_stores,
)

__all__ = [
    "SUBSCRIPTION_PARTITIONS",
    "dashboard_subscriptions",
    "deliver_dashboard_subscriptions_job",
    "subscription_partitions",
    "subscription_stores",
]
