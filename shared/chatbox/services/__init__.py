"""Domain services: each function is one unit of work on a Session and commits what it changes."""
