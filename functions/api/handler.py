"""Lambda entry for the REST API: the core's FastAPI app behind Mangum, composed once per cold start.

The MCP endpoints are their own function (functions/mcp), so this one never loads the MCP SDK.
"""

from __future__ import annotations

from mangum import Mangum

from chatbox.runtime import build_runtime
from chatbox.settings import get_settings
from chatbox.web.app import create_app

handler = Mangum(create_app(build_runtime(get_settings()), mcp=False), lifespan="off")
