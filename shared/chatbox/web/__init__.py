"""The REST face: FastAPI routers over the core services. Nothing in the core imports this package."""
