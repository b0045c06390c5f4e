"""The project's base layer, shared by every other package and by the CLI.

``names`` (file names, metric names and choices that several packages must spell alike),
``errors`` (the one error type for what a user can cause) and ``files`` (the one way to
write a file). It imports only the standard library, so the model package, the stoppers,
the analysis and ``tune_main.py --help`` can all import it for free.
"""
