"""Configuration: typed schema, YAML loading with file:line errors, ``${ENV}`` and ``*_file`` secrets."""
