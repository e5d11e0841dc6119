"""The one exception type for mistakes a user can make."""


class BuildError(Exception):
    """A problem with the user's input: a config key, a file, a value.

    `where` names the offending thing (``"guests.toml: guest[1].memory"``);
    the CLI prints ``hvbuild: error: <where>: <message>`` and exits 2.
    """

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message
