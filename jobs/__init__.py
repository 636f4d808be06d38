"""Entry points: they wire dedup's stages and settings, nothing more."""
