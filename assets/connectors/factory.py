"""One connector's Dagster definitions from its parts: the multi-asset of its tables
(partition = connection id), the freshness check over them and the job a sensor launches."""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster_dlt import DagsterDltResource

from assets.connectors.freshness import freshness_check
from assets.connectors.sync import ConnectorTranslator, Event, Failed, SyncStep, sync_partition
from assets.resources import SqlbookResource


@dataclass(frozen=True)
class ConnectorDefinitions:
    tables: dg.AssetsDefinition
    freshness: dg.AssetChecksDefinition
    job: "dg.UnresolvedAssetJobDefinition"  # (a name mypy knows; not exported at run time)


def connector_definitions(
    kind: str,
    *,
    partitions: dg.DynamicPartitionsDefinition,
    specs: Sequence[dg.AssetSpec],
    checks: Sequence[dg.AssetCheckSpec],
    translator: ConnectorTranslator,
    sync: SyncStep,
    classify: Callable[[BaseException], Failed | None],
    description: str,
    max_runtime_s: int,
) -> ConnectorDefinitions:
    @dg.multi_asset(
        name=f"{kind}_sync",
        specs=specs,
        check_specs=checks,
        partitions_def=partitions,
        can_subset=True,
        description=description,
    )
    def tables(
        context: dg.AssetExecutionContext, dlt: DagsterDltResource, sqlbook: SqlbookResource
    ) -> Iterator[Event]:
        yield from sync_partition(
            context,
            kind=kind,
            dlt=dlt,
            sqlbook=sqlbook,
            translator=translator,
            sync=sync,
            classify=classify,
        )

    freshness = freshness_check(kind, [spec.key for spec in specs])
    job = dg.define_asset_job(
        f"{kind}_connection_sync",
        # the tables and their per-sync checks; freshness runs on its own schedule
        selection=dg.AssetSelection.assets(tables) - dg.AssetSelection.checks(freshness),
        partitions_def=partitions,
        executor_def=dg.in_process_executor,
        tags={"dagster/max_runtime": max_runtime_s, "sqlbook/connector": kind},
    )
    return ConnectorDefinitions(tables, freshness, job)
