"""Signal: a container connector (see spec.py and ../CONTRACT.md)."""
