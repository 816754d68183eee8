"""The one exception the data loaders raise for missing or malformed files."""


class DatasetError(ValueError):
    """A dataset file is missing, truncated, or not in the expected format.

    The message is one line that names the file and what is wrong with it, so it
    can be shown to the user as is.
    """
