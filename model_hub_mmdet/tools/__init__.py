"""Command-line tools: the CLI, check, migrate, the run report and the shapes dataset."""
