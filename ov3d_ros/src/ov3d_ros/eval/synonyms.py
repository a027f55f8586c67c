"""Other names for the benchmark classes, to ask a class the way a user might (``ov3d-eval --synonyms``).

A synonyms table maps a class name to the other names it is asked by, instead of its own:
``{"sofa": ["couch"], "refrigerator": ["fridge"]}``. Classes the table does not name keep their
own name. ``--synonyms builtin`` is :data:`BUILTIN_SYNONYMS` (everyday words for ScanNet-20
classes); ``--synonyms FILE`` reads a YAML or JSON file of the same shape (a value may be one
name or a list). A bad file is refused with a :class:`SynonymsError` that says what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

from ov3d_ros.core.types import QueryError, QuerySet

# everyday words a user says for ScanNet-20 classes (the list, and a few more of the kind);
# wall, floor, bed, door, table, shower curtain and other furniture have no plain synonym
BUILTIN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "cabinet": ("cupboard",),
    "chair": ("seat",),
    "sofa": ("couch",),
    "window": ("windowpane",),
    "bookshelf": ("bookcase",),
    "picture": ("painting",),
    "counter": ("countertop",),
    "desk": ("writing desk",),
    "curtain": ("drapes",),
    "refrigerator": ("fridge",),
    "toilet": ("lavatory",),
    "sink": ("washbasin",),
    "bathtub": ("tub",),
}


class SynonymsError(ValueError):
    """A synonyms table that cannot be used (unreadable, wrong shape, unknown class, bad name)."""


def check_synonyms(table, class_names: tuple[str, ...], where: str = "synonyms") -> dict[str, tuple[str, ...]]:
    """``table`` as {class: (names, ...)}; raises SynonymsError for anything but a mapping from known
    class names to one name or a non-empty list of valid, distinct query names."""
    if not isinstance(table, dict) or not table:
        raise SynonymsError(
            f"{where}: expected a non-empty mapping of class name -> other names, got {type(table).__name__}"
        )
    checked: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for cls, names in table.items():
        if cls not in class_names:
            raise SynonymsError(f"{where}: unknown class {cls!r}; known: {', '.join(class_names)}")
        names = (names,) if isinstance(names, str) else names
        if not isinstance(names, (list, tuple)) or not names:
            raise SynonymsError(f"{where}: {cls!r} must map to a name or a non-empty list of names, got {names!r}")
        cleaned = []
        for name in names:
            if not isinstance(name, str):
                raise SynonymsError(f"{where}: {cls!r}: names must be text, got {name!r}")
            try:
                name = QuerySet.parse(name).positives
            except QueryError as exc:
                raise SynonymsError(f"{where}: {cls!r}: {exc}") from exc
            if len(name) != 1:
                raise SynonymsError(
                    f"{where}: {cls!r}: one name per entry, got {'; '.join(name)!r} (';' separates queries)"
                )
            name = name[0]
            if name.casefold() in owner:
                raise SynonymsError(f"{where}: {name!r} is given for both {owner[name.casefold()]!r} and {cls!r}")
            owner[name.casefold()] = cls
            cleaned.append(name)
        checked[cls] = tuple(cleaned)
    for cls in class_names:  # another class's own name must not be a synonym (the closed set asks both)
        if cls.casefold() in owner and owner[cls.casefold()] != cls and cls not in checked:
            raise SynonymsError(f"{where}: {cls!r} is a class of its own, not a name for {owner[cls.casefold()]!r}")
    return checked


def load_synonyms(spec: str | Path, class_names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``"builtin"`` or a YAML / JSON file -> the checked table (:func:`check_synonyms`)."""
    if str(spec) == "builtin":
        return check_synonyms(
            {k: list(v) for k, v in BUILTIN_SYNONYMS.items() if k in class_names}, class_names, "builtin"
        )
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SynonymsError(f"cannot read synonyms file {path}: {exc}") from exc
    import yaml

    try:
        table = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SynonymsError(f"{path}: not valid JSON: {exc}") from exc
    except yaml.YAMLError as exc:
        raise SynonymsError(f"{path}: not valid YAML: {exc}") from exc
    return check_synonyms(table, class_names, str(path))


def query_names(
    class_names: tuple[str, ...], synonyms: dict[str, tuple[str, ...]] | None
) -> dict[str, tuple[str, ...]]:
    """The names each class is asked by: its synonyms when the table has it, else its own name."""
    synonyms = synonyms or {}
    return {cls: synonyms.get(cls, (cls,)) for cls in class_names}
