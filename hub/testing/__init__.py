"""Tools for testing calhub and its provider plugins.

* :mod:`hub.testing.memory`: the memory provider (``memory``) and :class:`MemoryServer`, an
  in-process calendar server with a real server's semantics and fault knobs;
* :mod:`hub.testing.conformance`: :class:`ProviderConformance`, the pytest class every
  provider's tests subclass (imports pytest, so it is not imported here).

Nothing here is imported by the hub at run time except through the ``memory`` entry point.
"""
