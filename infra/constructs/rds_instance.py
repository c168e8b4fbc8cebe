"""`rds_instance(db)`: a service database's RDS instance, for the parts of the stack that exist
only on target=aws (a local database has none). One checked accessor instead of an `assert`
at each use; it belongs on `ServiceDatabase` (databases.py) once that file is free to change."""

from __future__ import annotations

from aws_cdk import aws_rds as rds

from infra.constructs.databases import ServiceDatabase


def rds_instance(db: ServiceDatabase) -> rds.DatabaseInstance:
    if db.instance is None:
        raise ValueError(f"{db.name} database: no RDS instance on target=local; this part of the stack is aws-only")
    return db.instance
