"""Output for people and scripts: tables, JSON, diagrams. Consumes the model, never the kernel."""

__all__: list[str] = []
