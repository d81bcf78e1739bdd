"""Corpus-specific preparation (Kaldi's ``local/``), one sub-package per corpus."""
