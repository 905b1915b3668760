"""The ``crossent`` command (``python -m crossent``): ``crossent bench`` times crossent against
its peers, ``crossent eval`` computes a loss over arrays stored in files.

Modules: :mod:`~crossent.cli.main` (the argument parser and entry point),
:mod:`~crossent.cli.bench` and :mod:`~crossent.cli.report` (timing, and its table and plot),
:mod:`~crossent.cli.eval` (the streamed evaluation), :mod:`~crossent.cli.sources` (operands
read from files), :mod:`~crossent.cli.output` (files written), :mod:`~crossent.cli.progress`,
:mod:`~crossent.cli.names` (short names of the functions) and :mod:`~crossent.cli.errors`.
The peer formulas the benchmark times are :mod:`crossent._peers`, shared with ``benches/``
and the tests.
"""
