"""Helpers shared by test modules, one module a topic: no test module imports from another, and a conftest holds
only fixtures. Import a helper from its module (`from tests.helpers.csvfiles import HEADER`), so a reader sees
where it comes from; this file exports nothing. The modules import one another one way, never in a cycle, and
stay under 300 lines (tests/unit/test_layout.py checks both).
"""
