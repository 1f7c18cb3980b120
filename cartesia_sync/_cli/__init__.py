"""The sub-commands of ``cartesia-sync``, one module each.

:mod:`cartesia_sync.cli` builds the parser and dispatches to the ``run``
function of these modules; what they share (exit codes, error lines, the
output files, the endpoint) lives in :mod:`.common`, :mod:`.outputs` and
:mod:`.endpoint`.
"""
