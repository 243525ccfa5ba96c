"""MarsIce Processing algorithms: thin parameter-to-command-line mappings over the ``marsice`` CLI."""
