"""dcase9: a toolkit for DCASE Task 9, language-queried audio source separation (LASS)."""

__version__ = "0.1.0"
