"""The package contract in one place: fixed names (names.json) and one JSON Schema per external
document and version (schemas/), shipped with the runtime and read by every consumer."""
from __future__ import annotations

import functools
import json
from importlib import resources


@functools.cache
def names() -> dict:
    """names.json: components, resource paths, entry names, IO names, rules, noise generator, result formats."""
    return json.loads(resources.files(__package__).joinpath("names.json").read_text())
