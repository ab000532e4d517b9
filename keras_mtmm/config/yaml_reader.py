"""The config's YAML reader: PyYAML's safe loader, bounded against hostile files.

Refused with a `ConfigError` naming the file and line: duplicate keys (YAML
would silently keep the last), more than `MAX_YAML_ALIASES` aliases, nesting
deeper than `MAX_YAML_DEPTH`, and documents that expand (aliases written out)
to more than `MAX_YAML_NODES` values: a few hundred bytes of "billion
laughs" never reach memory. Syntax errors stay `yaml.YAMLError`s for the
caller to place.
"""

from __future__ import annotations

from typing import Any

import yaml

from keras_mtmm.errors import ConfigError

MAX_YAML_ALIASES = 100
MAX_YAML_DEPTH = 50
MAX_YAML_NODES = 100_000  # counted with every alias expanded: a config is a few hundred


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys, many aliases, deep nesting and alias bombs."""

    def __init__(self, stream, where: str):
        super().__init__(stream)
        self.where = where
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                self._refuse(f"more than {MAX_YAML_ALIASES} aliases (*name)", "write the values out")
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            self._refuse(f"nesting deeper than {MAX_YAML_DEPTH} levels", "flatten the config")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(
                    f"{self.where}:{key_node.start_mark.line + 1}",
                    f"duplicate key {key!r}",
                    "keep one of them (YAML would silently use the last)",
                )
            seen.add(key)
        return super().construct_mapping(node, deep)

    def _refuse(self, what: str, fix: str):
        mark = self.peek_event().start_mark
        raise ConfigError(f"{self.where}:{mark.line + 1}", f"the YAML has {what}", fix)


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML with the safe loader, bounded: no duplicate keys, at most `MAX_YAML_ALIASES` aliases,
    `MAX_YAML_DEPTH` levels and `MAX_YAML_NODES` nodes once aliases are expanded (no "billion laughs")."""
    loader = _BoundedLoader(text, where)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise ConfigError(
                where, f"the YAML expands to more than {MAX_YAML_NODES:,} values (aliases)", "write the values out"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node, sizes: dict) -> int:
    """How many nodes `node` stands for with every alias written out (memoized per node: linear time)."""
    key = id(node)
    if key not in sizes:
        sizes[key] = MAX_YAML_NODES + 1  # a node inside itself (a recursive alias) is refused as too big
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        else:
            children = []
        total = 1
        for child in children:
            total += _expanded_size(child, sizes)
            if total > MAX_YAML_NODES:
                break
        sizes[key] = total
    return sizes[key]
