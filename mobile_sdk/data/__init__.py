"""Procedural training/validation data (no downloads) and the automatic prompt-adherence check."""
