"""Command-line faces of podnet: thin commands over the library."""

__all__: list[str] = []
