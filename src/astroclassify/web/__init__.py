"""FastAPI application: factory, dependencies and routers (thin; logic lives elsewhere)."""
