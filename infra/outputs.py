"""The names of the Valerix stack's CloudFormation outputs, defined once.

The stack creates its outputs under these names (infra/stack.py); everything that reads them —
the local cloud (`.valerix/outputs.json` keeps them under `stack`), the scripts, the tests —
imports the same constants, so a renamed output is one edit here and a search for an output
name finds its definition. No CDK import: reading an output name must not load aws_cdk.
"""

from __future__ import annotations

from typing import Final

TARGET: Final = "Target"  # local | aws
API_URL: Final = "ApiUrl"  # stage base URL, no trailing slash
API_ID: Final = "ApiId"
API_STAGE_NAME: Final = "ApiStageName"
WEBSITE_URL: Final = "WebsiteUrl"
WEBSITE_BUCKET_NAME: Final = "WebsiteBucketName"
ADMIN_API_KEY_ID: Final = "AdminApiKeyId"
ADMIN_API_KEY: Final = "AdminApiKey"  # target=local only: the key's value
ADMIN_API_KEY_VALUE_COMMAND: Final = "AdminApiKeyValueCommand"  # target=aws only: prints the key
ADMIN_KEY_SECRET_ARN: Final = "AdminKeySecretArn"  # noqa: S105 -- the name of an output holding an ARN
INVENTORY_QUEUE_URL: Final = "InventoryQueueUrl"
INVENTORY_DLQ_URL: Final = "InventoryDlqUrl"
COMPLETION_QUEUE_URL: Final = "CompletionQueueUrl"
COMPLETION_DLQ_URL: Final = "CompletionDlqUrl"
IDEMPOTENCY_TABLE_NAME: Final = "IdempotencyTableName"
CIRCUIT_BREAKER_TABLE_NAME: Final = "CircuitBreakerTableName"
GREMLIN_STATE_TABLE_NAME: Final = "GremlinStateTableName"
GREMLIN_PARAMETER_NAME: Final = "GremlinParameterName"
# The run-time (app role) logins; the master secrets are not outputs.
ORDER_DB_SECRET_ARN: Final = "OrderDbSecretArn"  # noqa: S105 -- the name of an output holding an ARN
INVENTORY_DB_SECRET_ARN: Final = "InventoryDbSecretArn"  # noqa: S105 -- the name of an output holding an ARN
LOG_GROUP_NAMES: Final = "LogGroupNames"  # comma-separated, one per function
BACKUP_BUCKET_NAME: Final = "BackupBucketName"
EXTERNAL_BACKUP_BUCKET_NAME: Final = "ExternalBackupBucketName"
BACKUP_KEY_ARN: Final = "BackupKeyArn"

# context fisExperiments=true (target=aws) only: the AWS FIS experiment template ids, by scenario
# (infra/constructs/fis.py), and the log group the experiments write to.
FIS_LATENCY_TEMPLATE_ID: Final = "FisLatencyTemplateId"
FIS_ERRORS_TEMPLATE_ID: Final = "FisErrorsTemplateId"
FIS_CRASH_TEMPLATE_ID: Final = "FisCrashTemplateId"
FIS_DATABASE_OUTAGE_TEMPLATE_ID: Final = "FisDatabaseOutageTemplateId"
FIS_LOG_GROUP_NAME: Final = "FisLogGroupName"
FIS_TEMPLATE_OUTPUTS: Final[dict[str, str]] = {
    "latency": FIS_LATENCY_TEMPLATE_ID,
    "errors": FIS_ERRORS_TEMPLATE_ID,
    "crash": FIS_CRASH_TEMPLATE_ID,
    "database-outage": FIS_DATABASE_OUTAGE_TEMPLATE_ID,
}

# One output per function: its deployed name. Each ends with FUNCTION_NAME_SUFFIX, which is how
# the local cloud and the scripts find "every function of the stack" in the outputs.
FUNCTION_NAME_SUFFIX: Final = "FunctionName"
ORDER_API_FUNCTION_NAME: Final = "OrderApiFunctionName"
ORDER_COMPLETION_FUNCTION_NAME: Final = "OrderCompletionFunctionName"
ORDER_MIGRATE_FUNCTION_NAME: Final = "OrderMigrateFunctionName"
ORDER_SWEEPER_FUNCTION_NAME: Final = "OrderSweeperFunctionName"
INVENTORY_API_FUNCTION_NAME: Final = "InventoryApiFunctionName"
INVENTORY_RESERVE_FUNCTION_NAME: Final = "InventoryReserveFunctionName"
INVENTORY_QUEUE_FUNCTION_NAME: Final = "InventoryQueueFunctionName"
INVENTORY_MIGRATE_FUNCTION_NAME: Final = "InventoryMigrateFunctionName"
GREMLIN_FUNCTION_NAME: Final = "GremlinFunctionName"
RECONCILE_FUNCTION_NAME: Final = "ReconcileFunctionName"
BACKUP_FUNCTION_NAME: Final = "BackupFunctionName"
BACKUP_SYNC_FUNCTION_NAME: Final = "BackupSyncFunctionName"
BACKUP_RESTORE_FUNCTION_NAME: Final = "BackupRestoreFunctionName"

# Function key (its construct id in the stack) -> the output that carries its name. The stack
# looks every function up here, so a function without an entry fails the synth.
FUNCTION_NAME_OUTPUTS: Final[dict[str, str]] = {
    "OrderApi": ORDER_API_FUNCTION_NAME,
    "OrderCompletion": ORDER_COMPLETION_FUNCTION_NAME,
    "OrderMigrate": ORDER_MIGRATE_FUNCTION_NAME,
    "OrderSweeper": ORDER_SWEEPER_FUNCTION_NAME,
    "InventoryApi": INVENTORY_API_FUNCTION_NAME,
    "InventoryReserve": INVENTORY_RESERVE_FUNCTION_NAME,
    "InventoryQueue": INVENTORY_QUEUE_FUNCTION_NAME,
    "InventoryMigrate": INVENTORY_MIGRATE_FUNCTION_NAME,
    "Gremlin": GREMLIN_FUNCTION_NAME,
    "Reconcile": RECONCILE_FUNCTION_NAME,
    "Backup": BACKUP_FUNCTION_NAME,
    "BackupSync": BACKUP_SYNC_FUNCTION_NAME,
    "BackupRestore": BACKUP_RESTORE_FUNCTION_NAME,
}
