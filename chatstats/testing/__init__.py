"""Test and benchmark helpers that ship with the package so scripts can use them too.

Nothing here is imported by the daemon itself.
"""
