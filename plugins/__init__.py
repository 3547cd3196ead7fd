"""Built-in provider plugins, each loaded through the ``calhub.providers`` entry-point group."""
