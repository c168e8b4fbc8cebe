"""The project's command-line tools (`make verify`, `make bench`, `make reconcile`, `make backup`):
an installed package (pyproject.toml), so they import each other and the local cloud plainly."""
