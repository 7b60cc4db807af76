"""The command line: the ``lstm-accum`` program (:mod:`.program`: its
parser, ``main``, the console entry point, one line per user error), one
module per subcommand with ``add_arguments(parser)`` and ``run(args)``
(:mod:`.train`, :mod:`.evaluate`, :mod:`.score`, :mod:`.sample`), the
argparse types and the options derived from declared settings
(:mod:`.arguments`) and what the subcommands share (:mod:`.common`: program name, exit statuses). It is the
top part: it may import every part below it (training, evaluation,
accumulation, models, data, the backend and the base modules), and nothing
imports it.
"""
from .common import EXIT_USER_ERROR, EXIT_NON_FINITE, EXIT_INTERRUPTED
from .program import main, console_main, build_parser

__all__ = ["main", "console_main", "build_parser", "EXIT_USER_ERROR",
           "EXIT_NON_FINITE", "EXIT_INTERRUPTED"]
