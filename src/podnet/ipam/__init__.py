"""Address allocation shared by the lab and the CNI plugin."""

__all__: list[str] = []
