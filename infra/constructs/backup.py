"""AWS Backup for the two RDS databases (target=aws only).

* rule `Every4Hours`: a backup every 4 hours, kept in the local (primary) vault.
* rule `DailyWithCopy`: one daily backup whose recovery point is also copied to a second,
  customer-managed-KMS-encrypted vault (so a compromised/deleted primary vault or key does
  not take every copy with it).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_backup as backup
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from constructs import Construct

from infra.nag import acknowledge_all


class DatabaseBackups(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        instances: Sequence[rds.DatabaseInstance],
        vault_name_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)

        self.local_vault = backup.BackupVault(
            self,
            "LocalVault",
            backup_vault_name=f"{vault_name_prefix}-local",
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.copy_key = kms.Key(
            self,
            "CopyVaultKey",
            description="Encrypts the Valerix backup copy vault",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.copy_vault = backup.BackupVault(
            self,
            "CopyVault",
            backup_vault_name=f"{vault_name_prefix}-copy",
            encryption_key=self.copy_key,
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.plan = backup.BackupPlan(self, "Plan", backup_plan_name=f"{vault_name_prefix}-databases")
        self.plan.add_rule(
            backup.BackupPlanRule(
                rule_name="Every4Hours",
                backup_vault=self.local_vault,
                schedule_expression=events.Schedule.cron(minute="0", hour="*/4"),
                start_window=Duration.hours(1),
                completion_window=Duration.hours(2),
                delete_after=Duration.days(7),
            )
        )
        self.plan.add_rule(
            backup.BackupPlanRule(
                rule_name="DailyWithCopy",
                backup_vault=self.local_vault,
                schedule_expression=events.Schedule.cron(minute="30", hour="3"),
                start_window=Duration.hours(1),
                completion_window=Duration.hours(4),
                delete_after=Duration.days(35),
                copy_actions=[
                    backup.BackupPlanCopyActionProps(
                        destination_backup_vault=self.copy_vault,
                        delete_after=Duration.days(35),
                    )
                ],
            )
        )
        selection = self.plan.add_selection(
            "Databases",
            resources=[backup.BackupResource.from_rds_database_instance(i) for i in instances],
            allow_restores=True,
        )
        acknowledge_all(
            selection,
            {
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSBackupServiceRolePolicyForBackup]": "AWS Backup's service role must carry the AWS "
                "managed backup policy (documented AWS Backup setup); it is assumable only by backup.amazonaws.com.",
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSBackupServiceRolePolicyForRestores]": "allow_restores=True attaches the AWS managed restore "
                "policy to the same AWS Backup service role (documented setup).",
            },
        )
