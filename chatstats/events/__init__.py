"""The event log (EventBus) and the in-process message_hub."""
