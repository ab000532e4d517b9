"""Data: sources that give a column table, splits, and the raw model inputs.

A *column table* is a dict `column name -> 1-D NumPy array` holding raw
values: image bytes, text, numbers (NaN = missing), category strings
("" = missing) and raw labels (""/NaN = unlabelled for that task).
See `tables.py` (loading, splitting, model inputs) and `sources.py`.
"""
