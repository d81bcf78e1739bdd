"""asrcomp: Kaldi-style recipes for compressing speech-recognition acoustic models."""

__version__ = "0.1.0"
