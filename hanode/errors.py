"""The operator-facing error of the CLI verbs, in a module of its own so that
the verbs (status, users, switchover, demo) and the CLI that catches it import
it from here instead of from each other."""

from __future__ import annotations


class UserError(Exception):
    """An operator mistake, phrased for the operator; exit status 2."""
