"""The one error the stack manager raises for problems a user can act on."""

from __future__ import annotations


class StackError(RuntimeError):
    """The stack cannot come up; the message names the program or setting at fault."""
