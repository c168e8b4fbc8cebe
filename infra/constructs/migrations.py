"""target=aws: each migrate function runs once per deploy, after its database is up.

(The local cloud invokes them itself after `cdklocal deploy`: valerix_localcloud/cli.py.)
Built into the given scope, the stack, so the triggers keep their logical ids.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import triggers
from constructs import Construct

from infra.constructs.databases import Databases
from infra.constructs.rds_instance import rds_instance
from infra.constructs.service_function import ServiceFunction
from infra.constructs.service_functions import MIGRATE_TIMEOUT


def migration_triggers(
    scope: Construct, functions: Mapping[str, ServiceFunction], databases: Databases
) -> list[triggers.Trigger]:
    made = []
    for key, db in (("OrderMigrate", databases.order), ("InventoryMigrate", databases.inventory)):
        if databases.vpc is None:
            raise ValueError("migration triggers need the RDS databases and their VPC (target=aws)")
        made.append(
            triggers.Trigger(
                scope,
                f"{key}Trigger",
                handler=functions[key].function,
                execute_after=[rds_instance(db), databases.vpc],
                execute_on_handler_change=True,
                invocation_type=triggers.InvocationType.REQUEST_RESPONSE,
                timeout=MIGRATE_TIMEOUT,
            )
        )
    return made
