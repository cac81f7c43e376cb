"""User-facing errors: anything a user can cause is a `UserError`, shown as one line by the CLI."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (path, model, plan, flags). The CLI prints it and exits 1."""

    exit_code = 1


class InfeasibleError(UserError):
    """The targets cannot be met. The CLI prints the reason and exits 2."""

    exit_code = 2
