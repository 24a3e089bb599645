"""One error hierarchy: what the CLI turns into a one-line message instead of a traceback."""


class AbflussError(Exception):
    """Base of every error abfluss raises on purpose."""


class InputError(AbflussError):
    """An input could not be read at all (missing, unreadable, unknown format, empty)."""


class ConfigError(AbflussError):
    """The configuration file is invalid."""


class WorkspaceError(AbflussError):
    """The workspace is unusable (permissions, corrupt catalog, locked by another writer)."""
