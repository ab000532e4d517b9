"""Serving: the TF Serving client (REST + gRPC), the server command, batch prediction without a server."""
