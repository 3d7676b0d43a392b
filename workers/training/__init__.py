"""The torch language-model trainer behind the ``lm`` objective.

Imports only torch, numpy and the standard library (no pydantic, Celery or search), so
it runs, and is benchmarked, on machines that have nothing else installed.
"""
