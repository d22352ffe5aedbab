"""The exceptions twotower raises; each carries the message the command line prints."""


class Error(Exception):
    """Base class of every error twotower raises."""


class InvalidInputError(Error, ValueError):
    """Bad input: an argument, a file's content, a model that does not fit the data."""


class NotFoundError(Error, FileNotFoundError):
    """A file or folder that does not exist."""
