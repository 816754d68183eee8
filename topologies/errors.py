"""The one error type of `topologies`: bad user input, reported in one line."""


class TopologyError(ValueError):
    """A topology, option, file or mixing matrix that cannot be used.

    The message is one line that names the offending value, so the CLI can
    print it as is and callers can catch it like any ValueError.
    """
