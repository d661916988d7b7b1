"""mixlab's command line: one module per command, wired up in :mod:`mixlab.cli.main`."""
