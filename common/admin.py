"""The Admin gRPC service (versions: list, pin, unpin), shared by retrieval and ranking."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from shortlist.common import versions
from shortlist.common.artifacts import ArtifactError
from shortlist.v1 import admin_pb2, admin_pb2_grpc

logger = logging.getLogger(__name__)


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, root: Path, watcher: versions.VersionWatcher,
                 fixed_version: str = "") -> None:
        self.root = root
        self.watcher = watcher
        self.fixed_version = fixed_version

    def _pinned(self) -> str:
        try:
            return versions.pinned(self.root) or ""
        except ArtifactError:
            return ""  # a malformed pin file counts as no pin (the watcher logs it)

    def ListVersions(self, request, context):
        response = admin_pb2.ListVersionsResponse(serving=self.watcher.serving or "",
                                                  pinned=self._pinned())
        for row in versions.describe_versions(self.root, self.watcher.serving or ""):
            response.versions.add(version=row["version"], created_at=row.get("created_at") or "",
                                  serving=row["serving"], pinned=row["pinned"])
        return response

    def SetVersion(self, request, context):
        wanted = request.version
        if self.fixed_version:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"this server is fixed to version {self.fixed_version} by its "
                          "*_VERSION setting")
        if wanted and ("/" in wanted or "\\" in wanted or "\x00" in wanted
                       or wanted.startswith(".") or len(wanted.encode()) > 255):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a version name: {wanted!r}")
        try:
            if wanted:
                versions.pin(self.root, wanted)
            else:
                versions.unpin(self.root)
        except ArtifactError as exc:
            code = (grpc.StatusCode.NOT_FOUND if "not found" in str(exc)
                    else grpc.StatusCode.FAILED_PRECONDITION)
            context.abort(code, str(exc))
        except OSError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot pin {wanted!r}: {exc}")
        self.watcher.check_now(force=True)
        if wanted and self.watcher.serving != wanted:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"version {wanted} is pinned but could not be loaded: "
                          f"{self.watcher.last_error}")
        logger.info("version set", extra={"fields": {"pinned": wanted or None,
                                                     "serving": self.watcher.serving}})
        return admin_pb2.SetVersionResponse(serving=self.watcher.serving or "",
                                            pinned=self._pinned())
