"""Errors a user can cause, raised as one clear line that names the fix."""


class CemError(Exception):
    """A problem the user can fix; the CLI prints it as one line, without a traceback."""


class ConfigurationError(CemError):
    """A setting (environment variable, config file) is missing or malformed."""


class WarehouseUnavailableError(CemError):
    """The warehouse cannot be reached or refuses us."""
