"""The embedded local cloud: LocalStack in host mode, local Postgres, a process-based Lambda executor."""
