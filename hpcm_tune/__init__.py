"""The project's base layer, shared by every other package and by the CLI.

``names`` (file names, metric names and choices that several packages must spell alike),
``errors`` (the one error type for what a user can cause), ``files`` (the one way to
write a file) and ``tune_files`` (reading Ray Tune's experiment folders, and repairing the
state a killed driver tore). It imports only the standard library, so the model package,
the stoppers, the sweep, the analysis and ``tune_main.py --help`` can all import it for free.
"""
