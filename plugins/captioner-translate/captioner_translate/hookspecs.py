"""The translate plugin's own hook, for plugins that add translation backends.

Added to captioner's plugin manager by the translate plugin (`add_hookspecs`), so a
plugin can implement it the same way it implements captioner's hooks.
"""

from __future__ import annotations

from typing import Callable

from captioner import hookspec


@hookspec
def register_translators(register: Callable[..., None]) -> None:
    """Contribute translation backends: `register(name, factory, description)`.

    :param register: call it once per backend; `factory(config)` returns a translator.
    """
