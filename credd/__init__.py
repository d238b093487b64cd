"""credd: a credential agent in the style of ssh-agent.

Kept tiny on purpose: `credd get` imports this package, so the public names
are loaded lazily (PEP 562) and nothing heavy happens here.
"""

__version__ = "0.1.0"

_LAZY = {
    "Client": "credd.client",
    "resolve": "credd.resolver",  # a module named `resolve` would shadow the function
    "RedactingFilter": "credd.redact",
}

__all__ = ["Client", "RedactingFilter", "__version__", "resolve"]  # _LAZY's names


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'credd' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The lazy names too: `dir(credd)` and completion in a REPL show what `credd.X` gives."""
    return sorted({*globals(), *_LAZY})
