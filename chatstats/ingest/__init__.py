"""Everything that writes iMessage data into the app database: import, live tail, conversations, contacts."""
