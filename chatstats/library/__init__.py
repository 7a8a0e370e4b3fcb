"""The read side of the iMessage domain (chats, messages, contacts, conversations)."""
