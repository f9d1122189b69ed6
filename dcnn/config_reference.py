"""The config reference (``docs/config.md``), generated from the config's own declarations.

One table per section: every key, its default, what it accepts and what it means, read from
the section dataclasses of :mod:`dcnn.config` (their ``key(default, doc)`` fields, choices and
ranges) and, for ``algorithm``, from the options the registered methods declare
(:mod:`dcnn.methods`), with the methods that read each key. A test checks that the page holds
this text, so the reference cannot drift from the code:
``python -m dcnn.config_reference > docs/config.md`` rewrites it.
"""
from __future__ import annotations

import dataclasses
import typing

from . import config as C

__all__ = ["config_reference"]

_NONE = "unset"


def _value(v) -> str:
    if v is None:
        return _NONE
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()


def _type(hint) -> str:
    text = hint if isinstance(hint, str) else getattr(hint, "__name__", str(hint))
    return (str(text).replace("typing.", "").replace(" | None", "").replace("NoneType", "")
            .replace("list", "list of int"))


def _accepts(section: str, key: str, hint) -> str:
    choices = C._CHOICES.get((section, key)) or C._topology_choices().get((section, key))
    if (section, key) == ("topology", "weights"):
        from .topology import DIRECTED_WEIGHT_RULES, WEIGHT_RULES
        choices = ("auto", *WEIGHT_RULES, *DIRECTED_WEIGHT_RULES)
    if choices:
        return " / ".join(f"`{c}`" for c in choices)
    rng = C._RANGES.get((section, key))
    return f"{_type(hint)}, {rng[1]}" if rng else _type(hint)


def _row(*cells: str) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _section(name: str, cls) -> list[str]:
    hints = typing.get_type_hints(cls)
    lines = [f"### `[{name}]`", "", "| key | default | accepts | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        lines.append(_row(f"`{f.name}`", _value(_default(f)), _accepts(name, f.name,
                                                                        hints[f.name]),
                          f.metadata.get("doc", "")))
    return lines


def _algorithm() -> list[str]:
    from .methods import REGISTRY, default_method, option_fields
    lines = ["### `[algorithm]`", "",
             "`name` [\"" + default_method() + "\"]: a registered method or variant "
             "(`next-fl` = `next` with `surrogate = \"fl\"`; the methods: "
             "[docs/methods.md](methods.md)). Every other key is an option some method "
             "declares; each method reads its own (a key means the same for every method "
             "that reads it), keys of other methods are ignored, unknown keys refused.", "",
             "| key | default | accepts | meaning | read by |", "|---|---|---|---|---|"]
    everyone = set(REGISTRY)
    for key, declared in option_fields().items():
        _, f, hint = declared[0]
        meta = f.metadata
        accepts = (" / ".join(f"`{c}`" for c in meta["choices"]) if meta.get("choices")
                   else f"{_type(hint)}, {meta['check'][1]}" if meta.get("check")
                   else _type(hint))
        readers = [m for m, _, _ in declared]
        who = "every method" if set(readers) == everyone else ", ".join(readers)
        lines.append(_row(f"`{key}`", _value(f.default), accepts, meta.get("doc", ""), who))
    return lines


def config_reference() -> str:
    """The markdown tables of every config section (what ``docs/config.md`` holds)."""
    out: list[str] = []
    for f in dataclasses.fields(C.Config):
        if f.name == "algorithm":
            out += _algorithm()
        else:
            out += _section(f.name, type(_default(f)))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(config_reference(), end="")
