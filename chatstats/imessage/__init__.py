"""Readers of Apple's formats: chat.db, typedstream, AddressBook, iPhone backups.

Pure functions over Apple's files; nothing here touches the app database.
"""
