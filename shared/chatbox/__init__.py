"""chatbox: Signal, Telegram, Discord and Slack behind one API for AI agents."""

__version__ = "0.1.0"
