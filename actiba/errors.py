"""Error types shared by every layer.

`InputError` is the one exception the CLI turns into "one clear line, exit code 2": raise it for anything
the *user* got wrong (bad table, unknown function, impossible budget, unwritable path). Any other
exception is a bug in actiba and exits with code 1.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input or an impossible request; the message is shown to the user as one line."""


class TableError(InputError):
    """A table that does not conform to `actiba-pwl/1`; the message names the offending key."""
