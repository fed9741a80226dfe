"""Unit tests of syncbridge._core: tests/core/test_<module>.py tests _core/_<module>.py.

A package, so its file names may repeat those of the behaviour tests elsewhere
(tests/test_process_executor.py, tests/faults/test_context.py).
"""
