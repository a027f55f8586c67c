"""The one error type the io layer raises for bad input."""


class CloudFormatError(ValueError):
    """A point cloud (message or file) that cannot be trusted.

    The message says what is wrong and what the producer should fix, e.g.
    ``"data has 1200 bytes but width*height*point_step = 1600 (height=1, width=100, point_step=16)"``.
    """
