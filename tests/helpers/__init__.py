"""Helpers shared by test modules, one module a topic: no test module imports from another, and a conftest holds
only fixtures. Import a helper from its module (`from tests.helpers.csvfiles import HEADER`), so a reader sees
where it comes from; this file exports nothing.

Imports flow one way (tests/unit/test_layout.py checks it): paths, settings, gates, answers, csvfiles, processes,
served, cli and ids import no other helper module; formats imports csvfiles and paths; browser imports paths and
settings; apps imports gates, processes and settings; deployment imports apps and gates.
"""
