"""Logical, encrypted backups of the service databases under a one-call-a-day external limit.

See functions/backup/service.py for the strategy and docs in each module for the formats.
"""
