"""The MCP faces: the per-mailbox agent server (`/mcp/{mailbox_id}`). Thin over the core's services."""
