"""Gateway's typed errors; the service edge maps them to gRPC status codes."""

import grpc


class GatewayError(Exception):
    code = grpc.StatusCode.UNKNOWN


class InvalidRequest(GatewayError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class UpstreamFailed(GatewayError):
    """Retrieval failed; carries its status so callers see NOT_FOUND/INVALID_ARGUMENT as is."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
