"""Bundled plugins for cartesia_sync, installed under the import name ``cartesia_sync_plugins``.

Each is an opt-in object written only against the public ``cartesia_sync`` API,
as a third party would write it.
"""
