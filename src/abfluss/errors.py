"""One error hierarchy: what the CLI turns into a one-line message instead of a traceback."""


class AbflussError(Exception):
    """Base of every error abfluss raises on purpose."""


class InputError(AbflussError):
    """An input could not be read at all (missing, unreadable, unknown format, empty)."""


class ConfigError(AbflussError):
    """The configuration file is invalid."""


class WorkspaceError(AbflussError):
    """The workspace is unusable (permissions, corrupt catalog, locked by another writer)."""


class AuthenticationError(AbflussError):
    """Who is asking could not be established: wrong name or password, locked out, unknown or
    revoked token (HTTP 401)."""


class PermissionDenied(AbflussError):
    """The caller is known but may not do this, or not for this tenant (HTTP 403)."""


class NotFound(AbflussError):
    """The named resource (finding, incident, report, user, token) does not exist (HTTP 404)."""
