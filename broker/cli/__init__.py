"""The ``broker`` command and its sub-commands."""
