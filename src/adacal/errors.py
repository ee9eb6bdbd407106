"""One error type for bad configuration, so every entry point fails the same way."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value that cannot work.

    The message always names the config key and says what to do, e.g.
    ``dataset.root: /x does not exist; pass dataset.root=<folder with train/ and test/>``.
    ``run.py`` catches it, prints the one line and exits with status 2.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}")
