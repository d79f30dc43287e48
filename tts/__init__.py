"""A neural text-to-speech engine: text in, 16 kHz speech out."""

__version__ = "0.1.0"
