"""``make bench``: the performance figures of docs/performance.md, measured side by side.

Not part of the test suite (pytest collects ``tests/`` only) nor of CI: figures are printed,
never asserted. ``python -m bench.run --help`` lists the rows and the knobs.
"""
