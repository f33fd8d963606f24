"""The domain: errors, ids, settings, schemas, the normalized message, rendering, signing, the vault.

Imports nothing above it.
"""
