"""scaletune's engine behind other tools' interfaces (one subpackage per tool).

An integration may import ``search`` and its tool's library, never ``service`` or
``workers`` (tests/test_architecture.py); ``search`` never imports an integration.
"""
