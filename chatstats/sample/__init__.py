"""Realistic sample Messages libraries (chat.db + AddressBook) for the demo, tests and benchmarks."""
