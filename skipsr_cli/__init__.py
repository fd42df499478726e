"""skipsr: the command line and media pipeline around the SkipSR models in `models/`."""

__version__ = "0.1.0"
