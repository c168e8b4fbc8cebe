"""Logical, encrypted database backups under a one-call-a-day external limit (issue 9).

Works on both targets (on AWS it complements the AWS Backup plan of `backup.py`; locally it is
the only backup). Creates:

* `bucket` — local backups bucket: restore points `points/<service>/<stamp>.vbk` and daily sync
  records `sync/<day>.json` (private, TLS only, access-logged; lifecycle expiry one day after the
  code's own 7-day retention, as a backstop).
* `external_bucket` — the "external" backup target: one `bundles/<day>.tar` per day, written
  with `If-None-Match: *` (the one-call-a-day guard); lifecycle backstop one day after the 30-day
  retention.
* `key` — KMS key (rotation on) for the per-point data keys (envelope encryption: the objects
  are AES-256-GCM encrypted by the function before they reach S3). The KMS grants require the
  encryption context to carry `purpose` and the point's identity (`point` = its key).
* History lock (`history_lock`, on by default on target=aws): both buckets are versioned and have
  S3 Object Lock in GOVERNANCE mode with a default retention equal to their retention (7 / 30
  days); the functions hold no delete permission on them (a bucket policy even denies deletes,
  retention/lock/versioning/lifecycle/policy changes to their roles) and run with
  `BACKUP_PRUNE_MODE=lifecycle`: lifecycle rules expire old objects instead. GOVERNANCE, not
  COMPLIANCE: no function (nor anyone without `s3:BypassGovernanceRetention`, which nothing in
  this stack is granted) can erase a locked version, while a deliberate break-glass
  administrator still can (a legal erasure request, a test account's teardown); COMPLIANCE would
  make a mistake irreversible for 30 days, even for the root user.
  Locally the lock is off: LocalStack 4.9.2 implements Object Lock but runs no lifecycle
  expiry, so the functions prune by deleting (`BACKUP_PRUNE_MODE=delete`), which on a locked,
  versioned bucket would only pile up delete markers and locked versions.
* Every write the functions make is create-only: their `s3:PutObject` grants require the
  `If-None-Match` header (`s3:if-none-match`), so they cannot overwrite a point or bundle.
* The daily sync makes exactly one attempt: its EventBridge target and its asynchronous
  invocation both have 0 retries (plus, in the code, an intent marker and a client without
  SDK retries).
* three functions (each a `ServiceFunction`: own least-privilege role and log group),
  `POWERTOOLS_SERVICE_NAME=backup`:

  | key | handler | trigger | can |
  |---|---|---|---|
  | `Backup` | `functions.backup.handler.backup_handler` | EventBridge `cron(0 */4 * * ? *)` + on demand | read both reader-role DB secrets, `kms:GenerateDataKey`, create/list/read `points/*` (local target: also delete old `points/*`, `sync/*`) |
  | `BackupSync` | `functions.backup.handler.sync_handler` | EventBridge `cron(50 23 * * ? *)` (daily), no retries | read `points/*` + `sync/*`, create `sync/*`; external: create/list `bundles/*` (local target: also delete old bundles) |
  | `BackupRestore` | `functions.backup.handler.restore_handler` | on demand (`make restore POINT=...`) | read both owner-role DB secrets, `kms:Decrypt`, read both buckets |

  KMS permissions carry the condition `kms:EncryptionContext:purpose = valerix-backup`.
* target=aws: the functions run in the databases' VPC (app subnets) with their own security
  group, which both RDS instances admit on the Postgres port.

Wiring (in `ValerixStack.__init__`, after `self.code` and the other functions exist, before
`StackAlarms` and `self._outputs()`)::

    from infra.constructs.local_backup import LocalBackup

    self.local_backup = LocalBackup(
        self, "LocalBackup",
        code=self.code,
        order_db=self.databases.order,
        inventory_db=self.databases.inventory,
        name_prefix=prefix,
        log_retention_days=config.log_retention_days,
        removal_policy=RemovalPolicy.RETAIN if config.is_aws else RemovalPolicy.DESTROY,
    )
    f.update(self.local_backup.functions)  # -> BackupFunctionName, BackupSyncFunctionName,
                                           #    BackupRestoreFunctionName outputs, alarms, log groups

and in `_outputs()`: `outputs.update(self.local_backup.outputs())` (BackupBucketName,
ExternalBackupBucketName, BackupKeyArn).
"""  # noqa: E501 -- Markdown table rows

from __future__ import annotations

from typing import Any, cast

from aws_cdk import CfnElement, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import outputs
from infra.constructs.access_logs import access_logs_bucket
from infra.constructs.databases import POSTGRES_PORT, ServiceDatabase
from infra.constructs.service_function import FunctionVpcPlacement, ServiceFunction, ServiceFunctionProps
from infra.nag import acknowledge

SERVICE = "backup"
ENCRYPTION_CONTEXT_PURPOSE = "valerix-backup"  # functions/backup/service.py:encryption_context
# What the functions must never do to a history-locked bucket (explicitly denied to their roles).
HISTORY_ERASING_ACTIONS = [
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:BypassGovernanceRetention",
    "s3:PutObjectRetention",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:DeleteBucket",
]
POINTS, SYNC, BUNDLES = "points/*", "sync/*", "bundles/*"

BACKUP_TIMEOUT = Duration.minutes(10)
SYNC_TIMEOUT = Duration.minutes(5)
RESTORE_TIMEOUT = Duration.minutes(15)


class LocalBackup(Construct):
    """Backup buckets, KMS key, backup/sync/restore functions and their schedules.

    Args:
        code: the shared function asset (its root holds the `functions/` package).
        order_db, inventory_db: the two `ServiceDatabase`s (secrets; on AWS also the RDS
            instances and the VPC placement). Backup reads their reader secrets, restore their
            owner secrets.
        tls_env: DB_TLS / DB_CA_BUNDLE for the functions that connect (`Databases.tls_environment`).
        name_prefix: function names become `<prefix>-backup`, `<prefix>-backup-sync`,
            `<prefix>-backup-restore`; the KMS alias `alias/<prefix>-backups`.
        log_retention_days: retention of the three log groups.
        removal_policy: of the buckets and the key (RETAIN on AWS; DESTROY for LocalStack).
        backup_schedule / sync_schedule: override the EventBridge schedules.
        local_retention_days / external_retention_days: 7 / 30 (passed to the functions).
        history_lock: versioning + Object Lock (GOVERNANCE, default retention = the retention
            days) on both buckets, no delete permission for the functions, lifecycle expiry.
            Default: on when the databases are RDS instances (target=aws).

    Attributes: `bucket`, `external_bucket`, `access_logs_bucket`, `key`, `functions`
    (`{"Backup", "BackupSync", "BackupRestore"}` -> ServiceFunction), `backup_rule`,
    `sync_rule`, `security_group` (AWS only), and `outputs()`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        order_db: ServiceDatabase,
        inventory_db: ServiceDatabase,
        name_prefix: str,
        tls_env: dict[str, str] | None = None,
        log_retention_days: int = 14,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        backup_schedule: events.Schedule | None = None,
        sync_schedule: events.Schedule | None = None,
        local_retention_days: int = 7,
        external_retention_days: int = 30,
        history_lock: bool | None = None,
        tracing: bool = False,  # X-Ray active tracing on the functions (target=aws)
    ) -> None:
        super().__init__(scope, construct_id)
        self._databases = (order_db, inventory_db)
        self.history_lock = (order_db.instance is not None) if history_lock is None else history_lock

        # ------------------------------------------------------------ storage + key
        self.key = kms.Key(
            self,
            "Key",
            description="Valerix logical backups: wraps the per-restore-point AES-256 data keys",
            alias=f"alias/{name_prefix.lower()}-backups",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.access_logs_bucket = access_logs_bucket(
            self, "AccessLogs", removal_policy=removal_policy, serves="the two backup buckets"
        )
        # Lifecycle: the current version expires one day after the retention (the code's own
        # pruning on the local target; the only pruning under the history lock). With
        # versioning, the expired version becomes noncurrent and is removed a day later, after
        # its Object Lock retention (= the retention days) has ended.
        self.bucket = self._bucket(
            "Bucket", "backups/", removal_policy, local_retention_days,
            {"Points": ("points/", local_retention_days + 1), "SyncRecords": ("sync/", external_retention_days + 1)},
        )  # fmt: skip
        self.external_bucket = self._bucket(
            "ExternalBucket", "external/", removal_policy, external_retention_days,
            {"Bundles": ("bundles/", external_retention_days + 1)},
        )  # fmt: skip

        # ------------------------------------------------------------ network (aws)
        self.security_group: ec2.SecurityGroup | None = None
        placement: FunctionVpcPlacement | None = None
        if order_db.function_placement is not None:
            vpc_placement = order_db.function_placement
            self.security_group = ec2.SecurityGroup(
                self,
                "FunctionsSg",
                vpc=vpc_placement.vpc,
                description="Valerix backup functions (Postgres to both databases, HTTPS to S3/KMS)",
                allow_all_outbound=True,
            )
            placement = FunctionVpcPlacement(
                vpc=vpc_placement.vpc, subnets=vpc_placement.subnets, security_group=self.security_group
            )
            for db in self._databases:
                if db.instance is not None:
                    db.instance.connections.allow_from(
                        self.security_group,
                        ec2.Port.tcp(POSTGRES_PORT),
                        f"Postgres from the backup functions ({db.name})",
                    )

        # ------------------------------------------------------------ functions
        common_env = {
            "BACKUP_BUCKET": self.bucket.bucket_name,
            "EXTERNAL_BUCKET": self.external_bucket.bucket_name,
            "BACKUP_KMS_KEY_ID": self.key.key_arn,
            "BACKUP_LOCAL_RETENTION_DAYS": str(local_retention_days),
            "BACKUP_EXTERNAL_RETENTION_DAYS": str(external_retention_days),
            "BACKUP_PRUNE_MODE": "lifecycle" if self.history_lock else "delete",
        }
        tls_env = tls_env or {"DB_TLS": "verify-full"}
        # Dumps need only SELECT: the reader role. Restore builds a fresh database and runs the
        # migrations in it: the owner role (CREATEDB). Neither sees the master login.
        dump_env = {
            "ORDER_DB_SECRET_ARN": order_db.reader_secret.secret_arn,
            "INVENTORY_DB_SECRET_ARN": inventory_db.reader_secret.secret_arn,
            **tls_env,
        }
        restore_env = {
            "ORDER_DB_SECRET_ARN": order_db.owner_secret.secret_arn,
            "INVENTORY_DB_SECRET_ARN": inventory_db.owner_secret.secret_arn,
            **tls_env,
        }

        def function(
            key: str,
            suffix: str,
            handler: str,
            description: str,
            timeout: Duration,
            memory: int,
            env: dict[str, str],
            vpc: FunctionVpcPlacement | None,
        ) -> ServiceFunction:
            return ServiceFunction(
                self,
                key,
                ServiceFunctionProps(
                    service=SERVICE,
                    handler=f"functions.backup.handler.{handler}",
                    function_name=f"{name_prefix}-{suffix}",
                    description=description,
                    code=code,
                    timeout=timeout,
                    memory_size=memory,
                    environment=env,
                    log_retention_days=log_retention_days,
                    vpc=vpc,
                    tracing=tracing,
                ),
            )

        backup = function(
            "Backup",
            "backup",
            "backup_handler",
            "Encrypted logical restore point of each database (every 4 h, on demand)",
            BACKUP_TIMEOUT,
            1024,
            {**common_env, **dump_env},
            placement,
        )
        sync = function(
            "BackupSync",
            "backup-sync",
            "sync_handler",
            "Daily: the one external call, a bundle of every restore point since the last sync",
            SYNC_TIMEOUT,
            1024,
            common_env,
            None,
        )
        restore = function(
            "BackupRestore",
            "backup-restore",
            "restore_handler",
            "Restores a point (local or external) into a fresh database and verifies it",
            RESTORE_TIMEOUT,
            1024,
            {**common_env, **restore_env},
            placement,
        )
        self.functions = {"Backup": backup, "BackupSync": sync, "BackupRestore": restore}

        # ------------------------------------------------------------ grants (least privilege)
        for db in self._databases:
            db.reader_secret.grant_read(backup.function)
            db.owner_secret.grant_read(restore.function)
        self._kms(backup, "kms:GenerateDataKey")
        self._kms(restore, "kms:Decrypt")

        local, external = self.bucket, self.external_bucket
        self._create(backup, "BackupCreatePoints", local, POINTS)
        self._s3(backup, "BackupReadPoints", ["s3:GetObject"], local, POINTS)
        self._list(backup, local)

        self._s3(sync, "SyncReadPoints", ["s3:GetObject"], local, POINTS)
        self._s3(sync, "SyncReadRecords", ["s3:GetObject"], local, SYNC)
        self._create(sync, "SyncCreateRecords", local, SYNC)  # records + the day's intent marker
        self._list(sync, local)
        self._create(sync, "SyncDeliverBundles", external, BUNDLES)
        self._list(sync, external)

        if not self.history_lock:
            # LocalStack runs no lifecycle expiry: locally the functions prune by deleting.
            self._s3(backup, "BackupPrunePoints", ["s3:DeleteObject"], local, POINTS)
            self._s3(backup, "BackupPruneSyncRecords", ["s3:DeleteObject"], local, SYNC)
            self._s3(sync, "SyncPruneBundles", ["s3:DeleteObject"], external, BUNDLES)
        else:
            roles = [fn.role for fn in self.functions.values()]
            for bucket in (local, external):
                bucket.add_to_resource_policy(iam.PolicyStatement(
                    sid="BackupFunctionsCannotEraseHistory",
                    effect=iam.Effect.DENY,
                    principals=[iam.ArnPrincipal(role.role_arn) for role in roles],
                    actions=HISTORY_ERASING_ACTIONS,
                    resources=[bucket.bucket_arn, bucket.arn_for_objects("*")],
                ))  # fmt: skip

        self._s3(restore, "RestoreReadPoints", ["s3:GetObject"], local, POINTS)
        self._s3(restore, "RestoreReadBundles", ["s3:GetObject"], external, BUNDLES)
        self._list(restore, local)
        self._list(restore, external)

        # ------------------------------------------------------------ schedules
        self.backup_rule = events.Rule(
            self,
            "BackupSchedule",
            description="Valerix: a restore point of each database every 4 hours",
            schedule=backup_schedule or events.Schedule.cron(minute="0", hour="*/4"),
            targets=[targets.LambdaFunction(backup.function, event=events.RuleTargetInput.from_object(
                {"source": "schedule"}), retry_attempts=2, max_event_age=Duration.hours(1))],
        )  # fmt: skip
        self.sync_rule = events.Rule(
            self,
            "SyncSchedule",
            description="Valerix: the one daily call to the external backup target",
            schedule=sync_schedule or events.Schedule.cron(minute="50", hour="23"),
            # No EventBridge retry: a retried delivery could be a second external call.
            targets=[targets.LambdaFunction(sync.function, event=events.RuleTargetInput.from_object(
                {"source": "schedule"}), retry_attempts=0)],
        )  # fmt: skip
        # EventBridge invokes asynchronously: Lambda would retry a failed run twice by default.
        # No retries, and a queued event older than 9 minutes (23:59) is dropped rather than
        # run on the next day, where it would spend that day's call.
        self.sync_invoke_config = sync.function.configure_async_invoke(
            retry_attempts=0, max_event_age=Duration.minutes(9)
        )

    # ------------------------------------------------------------------ helpers
    def _bucket(
        self,
        construct_id: str,
        log_prefix: str,
        removal_policy: RemovalPolicy,
        retention_days: int,
        expiry: dict[str, tuple[str, int]],
    ) -> s3.Bucket:
        """`expiry`: rule id -> (key prefix, days after which the current version expires)."""
        rules = []
        for rule_id, (prefix, days) in expiry.items():
            rules.append(s3.LifecycleRule(
                id=f"{rule_id}Expiry", prefix=prefix, expiration=Duration.days(days),
                noncurrent_version_expiration=Duration.days(1) if self.history_lock else None,
            ))  # fmt: skip
        if self.history_lock:  # tidy the delete markers the expiry leaves once their versions are gone
            rules.append(s3.LifecycleRule(id="ExpiredDeleteMarkers", expired_object_delete_marker=True))
        lock: dict[str, Any] = {}
        if self.history_lock:
            lock = {
                "versioned": True,
                "object_lock_enabled": True,
                "object_lock_default_retention": s3.ObjectLockRetention.governance(Duration.days(retention_days)),
            }
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.S3_MANAGED,  # objects are already AES-GCM envelope-encrypted
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=rules,
            removal_policy=removal_policy,
            **lock,
        )

    def _create(self, fn: ServiceFunction, sid: str, bucket: s3.Bucket, prefix: str) -> None:
        """Create-only writes: PutObject is allowed only with `If-None-Match` (no overwrites)."""
        self._s3(fn, sid, ["s3:PutObject"], bucket, prefix, conditions={"Null": {"s3:if-none-match": "false"}})

    def _kms(self, fn: ServiceFunction, action: str) -> None:
        fn.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid=action.replace("kms:", "Kms"),
                actions=[action],
                resources=[self.key.key_arn],
                conditions={
                    "StringEquals": {"kms:EncryptionContext:purpose": ENCRYPTION_CONTEXT_PURPOSE},
                    # a data key only for a named restore point (its identity is in the context)
                    "StringLike": {"kms:EncryptionContext:point": POINTS},
                },
            )
        )

    def _s3(
        self,
        fn: ServiceFunction,
        sid: str,
        actions: list[str],
        bucket: s3.Bucket,
        prefix: str,
        conditions: dict | None = None,
    ) -> None:
        fn.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid=sid, actions=actions, resources=[bucket.arn_for_objects(prefix)], conditions=conditions
            )
        )
        stack = Stack.of(self)
        logical_id = stack.resolve(stack.get_logical_id(cast(CfnElement, bucket.node.default_child)))
        acknowledge(
            fn.role,
            f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{prefix}]",
            f"Object-level S3 actions ({', '.join(actions)}) limited to the `{prefix}` key prefix of "
            "one backup bucket: restore points/bundles are named by timestamp, so a wildcard within "
            "the prefix is the narrowest possible resource.",
        )

    @staticmethod
    def _list(fn: ServiceFunction, bucket: s3.Bucket) -> None:
        fn.role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn]))

    def outputs(self) -> dict[str, str]:
        """Stack outputs besides the function names (those come from `functions`)."""
        return {
            outputs.BACKUP_BUCKET_NAME: self.bucket.bucket_name,
            outputs.EXTERNAL_BACKUP_BUCKET_NAME: self.external_bucket.bucket_name,
            outputs.BACKUP_KEY_ARN: self.key.key_arn,
        }
