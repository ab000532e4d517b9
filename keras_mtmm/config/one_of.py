"""Config blocks whose `type` (or `strategy`) selects a registered class that declares its own keys.

As Model Garden's `OneOfConfig`, one block holds the keys every choice shares and one sub-config
per choice; here the sub-config's dataclass lives with the registered class (`config_class`),
beside its checks (`checks`, see `keras_mtmm.config.bounds`), so adding a strategy touches its own
file and nothing in `keras_mtmm.config`. In YAML the selected class's keys go under its name, or,
as older configs wrote them, flat in the block:

    sharing: {type: mmoe, tower_units: [32], mmoe: {num_experts: 8}}
    sharing: {type: mmoe, tower_units: [32], num_experts: 8}          # the same config

A flat key goes to the selected class when it has that key, otherwise to every registered class
that has it (so `--set weighting.strategy=cagrad` finds `weighting.cagrad_c` given beside
`strategy: static`). The sub-configs a block keeps are the selected one and any other given a
value that is not its default; `get()` is the selected one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from keras_mtmm.config.types import build
from keras_mtmm.errors import ConfigError, did_you_mean
from keras_mtmm.registry import Registry


@dataclasses.dataclass
class NoKeys:
    """The sub-config of a registered class with no keys of its own."""


def exclusive(default: Any) -> Any:
    """A sub-config field whose non-default value is an error when another class is selected
    (e.g. `sharing.dselect_k` with `sharing.type: mmoe`): it would change nothing."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"exclusive": True})
    return dataclasses.field(default=default, metadata={"exclusive": True})


def own_keys(config_class) -> list[str]:
    return [] if config_class is None else [field.name for field in dataclasses.fields(config_class)]


class OneOfConfig:
    """Mixin of a config dataclass with a selector field (`selector`) naming an entry of `registry`.

    The dataclass declares the selector, the shared keys, and `sub_configs` / `origins` (filled by
    `from_raw`; `origins[name]` is the dotted key a sub-config's keys were given under, for errors).
    """

    registry: ClassVar[Registry]
    selector: ClassVar[str] = "type"
    kind: ClassVar[str] = ""  # how errors name the selector, e.g. "sharing.type"

    # -- reading --------------------------------------------------------------------------------
    def selected(self) -> str | None:
        return getattr(self, self.selector)

    def get(self):
        """The selected class's sub-config (its defaults where the config gives none)."""
        name = self.selected()
        if name not in self.sub_configs:
            self.sub_configs[name] = (self.config_class_of(name) or NoKeys)()
        return self.sub_configs[name]

    @classmethod
    def config_class_of(cls, name: str):
        return getattr(cls.registry.get(name, cls.kind), "config_class", None)

    @classmethod
    def owners_of(cls, key: str) -> list[str]:
        """The registered classes that declare `key`."""
        return [name for name in cls.registry.names() if key in cls.keys_of(name)]

    @classmethod
    def keys_of(cls, name: str) -> list[str]:
        """The keys registered class `name` declares."""
        return own_keys(cls.config_class_of(name))

    # The selected class's keys read and written on the block, as older configs' flat keys were.
    def __getattr__(self, key: str):
        if key.startswith("_") or key in ("sub_configs", "origins") or "sub_configs" not in self.__dict__:
            raise AttributeError(key)
        if key in self.keys_of(self.selected()):
            return getattr(self.get(), key)
        raise AttributeError(f"{type(self).__name__}: '{self.selected()}' has no key {key!r}")

    def __setattr__(self, key: str, value) -> None:
        if key in self.__dataclass_fields__ or key.startswith("_") or "sub_configs" not in self.__dict__:
            object.__setattr__(self, key, value)
        elif key in self.keys_of(self.selected()):
            setattr(self.get(), key, value)
        else:
            raise AttributeError(f"{type(self).__name__}: '{self.selected()}' has no key {key!r}")

    @classmethod
    def of(cls, **keys):
        """The block from keyword arguments, as its YAML would give them (shared keys, the selected
        class's keys flat, or `<name>={...}`), checked as the loader checks them.

        Example:
            >>> SharingConfig.of(type="mmoe", num_experts=8).get().num_experts
            8
        """
        return build(cls, keys, cls.kind.split(".")[0] if "." in cls.kind else "")

    # -- building from raw data (called by keras_mtmm.config.types.build) -----------------------
    @classmethod
    def from_raw(cls, raw: dict, where: str, build: Callable = build):
        """Build the block from raw data: shared keys, `<name>:` sub-configs and legacy flat keys."""
        shared = [field.name for field in dataclasses.fields(cls) if field.name not in ("sub_configs", "origins")]
        plain, nested, flat = {}, {}, {}
        for key, value in raw.items():
            if key in shared:
                plain[key] = value
            elif key in cls.registry and (isinstance(value, dict) or value is None or not cls.owners_of(key)):
                nested[key] = {} if value is None else value  # (sharing.dselect_k: 2 is dselect_k's key)
            else:
                flat[key] = value
        block = build(cls, plain, where, plain_only=True)
        name = block.selected()
        cls.registry.get(name, f"{where}.{cls.selector}")
        owners: dict[str, list[str]] = {}
        for key in flat:
            if key in cls.keys_of(name):
                owners[key] = [name]
                continue
            owners[key] = cls.owners_of(key)
            if not owners[key]:
                known = shared + sorted({k for n in cls.registry.names() for k in cls.keys_of(n)})
                hint = did_you_mean(key, known + cls.registry.names())
                raise ConfigError(f"{where}.{key}", "unknown key", hint or f"known keys: {', '.join(known)}")
        for member in sorted(set(nested) | {owner for names in owners.values() for owner in names} | {name}):
            sub_raw = nested.get(member, {})
            sub_where = f"{where}.{member}"
            if not isinstance(sub_raw, dict):
                raise ConfigError(sub_where, f"expected a mapping, got {type(sub_raw).__name__}", "write its keys")
            sub_raw = dict(sub_raw)
            key_wheres = {}
            for key, value in flat.items():
                if member in owners[key]:
                    if key in sub_raw:
                        raise ConfigError(f"{where}.{key}", f"given twice (also as {sub_where}.{key})", "keep one")
                    sub_raw[key], key_wheres[key] = value, f"{where}.{key}"
            config_class = cls.config_class_of(member) or NoKeys
            block.sub_configs[member] = build(config_class, sub_raw, sub_where, key_wheres=key_wheres)
            block.origins[member] = sub_where if member in nested else where
            if member != name and block.sub_configs[member] == config_class():
                del block.sub_configs[member]  # another class's defaults (an older config's flat keys)
        return block

    # -- writing --------------------------------------------------------------------------------
    def to_raw(self, to_plain: Callable) -> dict:
        """The block as YAML-ready data: shared keys, then the selected sub-config and any non-default other."""
        raw = {
            field.name: to_plain(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if field.name not in ("sub_configs", "origins")
        }
        self.get()
        for member, sub_config in self.sub_configs.items():
            keys = to_plain(sub_config)
            if member == self.selected() or keys != to_plain(type(sub_config)()):
                if keys or member != self.selected():
                    raw[member] = keys
        return raw

    # -- checking -------------------------------------------------------------------------------
    def where_of(self, member: str, where: str) -> str:
        return self.origins.get(member, where)

    def check_choice(self, where: str, config=None) -> None:
        """Each sub-config's own checks (`checks`), the selected class's `check_config(options, block,
        config, where)` (what it needs elsewhere in the experiment `config`), and an error for an
        exclusive key given to a class that is not selected."""
        name = self.selected()
        entry = self.registry.get(name, f"{where}.{self.selector}")
        self.get()
        selected_keys = own_keys(getattr(entry, "config_class", None))
        for member, sub_config in self.sub_configs.items():
            origin = self.where_of(member, where)
            if member != name:
                defaults = type(sub_config)()
                for field in dataclasses.fields(sub_config):
                    value = getattr(sub_config, field.name)
                    if field.metadata.get("exclusive") and field.name not in selected_keys:
                        if value != getattr(defaults, field.name):
                            owners = self.owners_of(field.name)
                            raise ConfigError(
                                f"{origin}.{field.name}",
                                f"applies to {self.kind} {' and '.join(owners)} only, not '{name}'",
                                f"remove {field.name}",
                            )
            for check in getattr(self.registry.get(member), "checks", ()):
                check.check(sub_config, origin)
        check_config = getattr(entry, "check_config", None)
        if check_config is not None:
            check_config(self.get(), self, config, self.where_of(name, where))
