"""The ``serve``, ``check`` and ``routes`` sub-commands."""
