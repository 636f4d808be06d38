"""The dev kit: the demo's catalog generator and its fault-injecting image server, synthetic
features for benchmarks, and the quality bench set and its scoring (``dedup demo``, ``dedup eval``,
``bench/``, the tests).

Nothing in the job imports it, and ``spark-submit.sh`` leaves it out of ``dist/dedup.zip``: it
never ships to executors.
"""
