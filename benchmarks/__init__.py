"""The benchmarks of captum_classpattern: one script per measurement, and their shared harness.

Run a benchmark as a module from the repository root, so that it imports the checkout's
package and its sibling scripts::

    python -m benchmarks.bench_search --quick
    python -m benchmarks.<name> --help

Every script has ``main(argv) -> int`` and prints its result as one JSON line, last. What
they share (atomic JSON files, the JSON line, timing, threads, common options, child
processes, the search test beds) lives in :mod:`benchmarks._harness`. The numbers and the
commands that produced them are in ``benchmarks/RESULTS.md``.

``cifar10_models.py`` imports only the standard library, torch and the package, so it also
runs by path (``python benchmarks/cifar10_models.py ...``).
"""
