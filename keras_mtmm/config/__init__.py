"""The experiment config: typed schema, YAML and --set loading, checks across sections."""
