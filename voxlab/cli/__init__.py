"""The commands: the top layer, the only code that may import every other layer (README, "Layout")."""
