"""The HTML run report: its sections, health, plots."""
