"""The sensor that delivers dashboard subscriptions when they are due."""

from datetime import UTC, datetime

import dagster as dg

from assets.dashboards import (
    deliver_dashboard_subscriptions_job,
    subscription_partitions,
    subscription_stores,
)
from assets.resources import SqlbookResource
from orchestration.sensors import partitioned_runs, partitions_in_flight


@dg.sensor(
    job=deliver_dashboard_subscriptions_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keep one `dashboard_subscriptions` partition per subscription (added for new "
    "ones, deleted for removed ones) and launch a `deliver_dashboard_subscriptions` run for "
    "every enabled subscription that is due, moving its next due time on (an occurrence that "
    "comes while the subscription's previous delivery still runs is skipped).",
)
def dashboard_subscription_sensor(
    context: dg.SensorEvaluationContext, sqlbook: SqlbookResource
) -> dg.SensorResult | dg.SkipReason:
    now = datetime.now(UTC)
    requests: list[dg.RunRequest] = []
    with subscription_stores(sqlbook) as stores:
        store = stores.subscriptions
        existing = {str(i) for i in store.ids()}
        due = store.due(now)
        in_flight = partitions_in_flight(context.instance, deliver_dashboard_subscriptions_job.name)
        for subscription in due:
            assert subscription.next_due_at is not None
            following = subscription.schedule().next_after(now)
            if not store.advance(subscription.id, subscription.next_due_at, following):
                continue  # changed or moved on by someone else since it was read
            if str(subscription.id) in in_flight:
                continue
            requests.append(
                dg.RunRequest(
                    partition_key=str(subscription.id),
                    run_key=f"{subscription.id}@{subscription.next_due_at.isoformat()}",
                    tags={
                        "sqlbook/dashboard_subscription": str(subscription.id),
                        "sqlbook/due_at": subscription.next_due_at.isoformat(),
                    },
                )
            )
    return partitioned_runs(
        context, subscription_partitions, existing, requests, idle="no subscription is due"
    )
