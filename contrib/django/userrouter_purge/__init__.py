"""userrouter_purge: surrogate keys and purges for userrouter.

Responses are tagged with the model rows and tables they were built from
(``Surrogate-Key: blog.article blog.article:1``), and saving or deleting
rows purges those keys through userrouter's purge API once the transaction
commits. See README.md.

Public API (importable from the package; loaded on first use, so settings
may import DEFAULT_IGNORE_MODELS):

* ``add_surrogate_keys(request_or_response, *keys)``, ``@surrogate_keys(*keys)``
* ``purge(*objects, keys=(), urls=(), using=None)``: after commit, batched
* ``send_purge(keys=(), urls=(), soft=False, all=False)``: now; returns bool
* ``batch()``: one purge for a whole block (commands, tasks)
* ``instance_key(obj)``, ``model_key(model)``, ``OVERFLOW_KEY``
* ``DEFAULT_IGNORE_MODELS``
"""

_EXPORTS = {
    "add_surrogate_keys": "keys",
    "surrogate_keys": "keys",
    "instance_key": "keys",
    "model_key": "keys",
    "OVERFLOW_KEY": "keys",
    "purge": "purging",
    "send_purge": "purging",
    "batch": "purging",
    "DEFAULT_IGNORE_MODELS": "conf",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module("." + _EXPORTS[name], __name__), name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
