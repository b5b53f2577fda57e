"""The Admin gRPC service (versions: list, pin, unpin), shared by retrieval and ranking.

Like the other services it only translates: failures are typed errors (``common.errors``) that
the gRPC edge turns into status codes, and the edge writes the request's log line.
"""

from __future__ import annotations

from pathlib import Path

from shortlist.common import edge, errors, validation, versions
from shortlist.common.artifacts import ArtifactError
from shortlist.v1 import admin_pb2, admin_pb2_grpc


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
        edge.annotate(version=wanted[:64])
        if self.fixed_version:
            raise errors.FailedPrecondition(
                f"this server is fixed to version {self.fixed_version} by its *_VERSION "
                "setting")
        if wanted:
            validation.check_version_name(wanted)
        try:
            if wanted:
                versions.pin(self.root, wanted)
            else:
                versions.unpin(self.root)
        except ArtifactError as exc:
            if "not found" in str(exc):
                raise errors.NotFound(str(exc)) from exc
            raise errors.FailedPrecondition(str(exc)) from exc
        except OSError as exc:
            raise errors.FailedPrecondition(f"cannot pin {wanted!r}: {exc}") from exc
        self.watcher.check_now(force=True)
        if wanted and self.watcher.serving != wanted:
            raise errors.FailedPrecondition(f"version {wanted} is pinned but could not be "
                                            f"loaded: {self.watcher.last_error}")
        edge.annotate(pinned=wanted or None, serving=self.watcher.serving)
        return admin_pb2.SetVersionResponse(serving=self.watcher.serving or "",
                                            pinned=self._pinned())
