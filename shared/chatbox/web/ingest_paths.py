"""The templates of the two ingest routes: platforms' webhooks and container connectors' pushes.

The routers declare them, the fast lane (`chatbox.web.fast_ingest`) serves their POSTs and labels its metrics with
them, and a root that does not serve them itself (the api function: the template sends their POSTs to the inbound
function) hands their requests on by them, without loading the ingest code.
"""

from __future__ import annotations

INGEST_ROUTE = "/v1/ingest/{platform}/{connection_id}"
INBOUND_ROUTE = "/v1/connections/{connection_id}/messages"
INGEST_PATHS = (INGEST_ROUTE, INBOUND_ROUTE)
