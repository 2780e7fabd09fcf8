"""loomtui: a terminal control plane for teams running AI coding agents."""

__version__ = "0.1.0"
