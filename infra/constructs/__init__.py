"""Small, single-purpose constructs the Valerix stack is composed from."""
