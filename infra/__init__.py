"""Valerix CDK app (Python): one stack definition for target=local and target=aws."""
