"""The `prep` command line: thin typer commands over the library (typer is imported only here)."""
