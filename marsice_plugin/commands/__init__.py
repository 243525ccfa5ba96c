"""One module per ``marsice`` sub-command: ``add_parser(subparsers)`` and ``run(args, reporter)``.

The CLI (:mod:`marsice_plugin.cli`) only lists them; each module imports its heavy dependencies
inside ``run`` so ``marsice --help`` stays instant.
"""
