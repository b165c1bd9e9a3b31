"""The query service: user-facing gRPC server for devices, history, latest values and live feeds."""
