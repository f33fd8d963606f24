"""The local runtime (`chatbox dev`, `chatbox api`, `chatbox worker`): serving the faces with uvicorn, and
consuming the local queue in a worker process (`chatbox dev` runs it as a supervised child)."""
