"""Task types' metric formulas in NumPy."""
