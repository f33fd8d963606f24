"""The `chatbox` command: set-up, serving, and operator chores."""
