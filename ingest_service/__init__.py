"""The ingest service: device-facing gRPC server that stores uploads exactly once at COPY speed."""
