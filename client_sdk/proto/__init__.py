"""Generated protobuf/gRPC code (make proto); do not edit."""
