"""Platforms that exist only for tests: each is a folder exporting a `PlatformSpec`, as a real one would."""
