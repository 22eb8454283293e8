"""Generated gRPC stubs for ``crucible.proto``; regenerate with ``make proto``."""

from crucible.protocol import crucible_pb2 as pb
from crucible.protocol import crucible_pb2_grpc as rpc

__all__ = ["pb", "rpc"]
