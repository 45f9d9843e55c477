"""The `saferl` command line (typer): envs, train, eval, render, export."""
