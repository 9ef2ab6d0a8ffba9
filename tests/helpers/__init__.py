"""Test-only fixtures: toy modules, fake run folders, a mini test set."""
