"""`soaes bench serve` hands the caller's root logging back as it found it."""

from __future__ import annotations

import logging

import soaes.bench.serve as bench_serve


def test_root_logging_restored_after_the_benchmark(monkeypatch):
    root = logging.getLogger()
    handler = logging.StreamHandler()
    plain = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    handler.setFormatter(plain)
    monkeypatch.setattr(root, "handlers", [handler])

    def reconfigures(argv):  # what Ray Serve's LLM modules do to the driver
        handler.setFormatter(logging.Formatter('{"message": "%(message)s"}'))
        root.addHandler(logging.NullHandler())
        root.setLevel(logging.DEBUG)
        return 0

    monkeypatch.setattr(bench_serve, "_main", reconfigures)
    level = root.level
    assert bench_serve.main([]) == 0
    assert root.handlers == [handler] and handler.formatter is plain and root.level == level
