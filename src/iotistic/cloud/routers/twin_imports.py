"""IFC import jobs: upload a file (streamed to disk under the data dir, size-limited), follow the job, read its report.

    POST /api/v1/twin/imports        multipart/form-data: `file` (the .ifc), optional `source` -> 202 + the job
    GET  /api/v1/twin/imports        recent jobs, newest first
    GET  /api/v1/twin/imports/{id}   one job: status, progress, report or error

All admin, with the licence's `digitalTwin` feature. Refused at upload: not multipart (415), no file or an empty
one (422), a file that is not IFC-SPF or is cut short (422), more than TWIN_MAX_UPLOAD_MB (413, as soon as the
stream passes the limit). What only parsing finds (corrupt content, an unsupported schema) fails the job with a
clear message; the graph is never half-changed.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from iotistic.cloud.deps import Admin, Session, require_feature
from iotistic.cloud.errors import ApiError, not_found
from iotistic.cloud.services import audit
from iotistic.twin.ifc_import import IfcError, check_ifc_file
from iotistic.twin.jobs import ImportJobs, get_job, job_json, list_jobs

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

_MB = 1024 * 1024
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers around the file
_MAX_FIELD = 1024
_FIELDS = ("source",)  # the text fields read besides `file`
_JOB_ID = r"^[0-9a-f]{32}$"


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Per app: the job runner; jobs a stopped process left behind are marked failed now."""
    ctx = app.state.ctx
    jobs = ImportJobs(ctx.sessions, Path(ctx.settings.data_dir) / "twin-uploads")
    app.state.twin_imports = jobs
    app.state.twin_max_upload = ctx.settings.twin_max_upload_mb * _MB
    try:
        await jobs.recover()
    except Exception:  # the database may be unreachable at start (/ready says so); jobs are checked on reads too
        import logging

        logging.getLogger(__name__).warning("could not check for interrupted IFC imports at start", exc_info=True)
    try:
        yield
    finally:
        await jobs.close()


router = APIRouter(prefix="/api/v1/twin", tags=["digital twin"], lifespan=lifespan,
                   dependencies=[Depends(require_feature("digitalTwin", "the digital twin"))])


class ImportProgress(BaseModel):
    phase: str
    percent: int


class ImportJobOut(BaseModel):
    id: str
    status: str = Field(description="queued, running, succeeded or failed")
    source: str = Field(description="the import's name in the graph: a re-import under it replaces what it made")
    filename: str
    sizeBytes: int
    progress: ImportProgress
    report: dict[str, Any] | None = Field(
        description="on success: schema, counts per node type, nodes, edges, created/updated/deleted per type, "
                    "edgesCreated, edgesDeleted, lostMappings, warnings")
    error: str | None
    createdBy: str | None
    createdAt: Any
    finishedAt: Any


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the file is larger than the limit of {limit // _MB} MB "
                                              f"(TWIN_MAX_UPLOAD_MB)")


def _source_name(filename: str) -> str:
    base = os.path.basename(filename.replace("\\", "/")).strip()
    base = re.sub(r"[\x00-\x1f]", "", base)
    return base[:128] or "upload.ifc"


class _Upload:
    """Streams one multipart body: the `file` part to `path` (counting bytes), the `source` field to memory."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.files = 0
        self._out: Any = None
        self._field: str | None = None
        self._value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self.error: ApiError | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": self._header_field, "on_header_value": self._header_val,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
        }

    def _part_begin(self) -> None:
        self._headers, self._field, self._value = {}, None, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == "file":
            self.files += 1
            if self.files > 1:
                raise _Refused(ApiError(422, "validation_error", "send one file per import"))
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace")
            self._out = open(self.path, "wb")  # closed in _part_end, or by close() when the upload is refused
        elif name in _FIELDS:
            self._field = name
        # Any other part is skipped unread.

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self.size += end - start
            if self.size > self.limit:
                raise _Refused(_too_large(self.limit))
            self._out.write(data[start:end])
        elif self._field is not None:
            self._value += data[start:end]
            if len(self._value) > _MAX_FIELD:
                raise _Refused(ApiError(422, "validation_error", f"form field {self._field} is too long"))

    def _part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        elif self._field is not None:
            self.fields[self._field] = self._value.decode("utf-8", "replace")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class _Refused(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


async def _receive_file(request: Request, path: Path, limit: int) -> _Upload:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(415, "unsupported_media_type", "send the IFC file as multipart/form-data, in a field named "
                                                      "`file`")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + _FORM_OVERHEAD:
        raise _too_large(limit)
    upload = _Upload(path, limit)
    parser = MultipartParser(boundary, cast("MultipartCallbacks", upload.callbacks()))
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except _Refused as refused:
        raise refused.error from None
    except MultipartParseError as exc:
        raise ApiError(400, "bad_request", f"the multipart body is malformed: {exc}") from None
    finally:
        upload.close()
    return upload


@router.post("/imports", status_code=202, response_model=ImportJobOut,
             responses={413: {"description": "file over TWIN_MAX_UPLOAD_MB"},
                        415: {"description": "not multipart/form-data"}},
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["file"],
                 "properties": {"file": {"type": "string", "format": "binary"},
                                "source": {"type": "string", "maxLength": 128}}}}}}})
async def create_import(request: Request, principal: Admin, session: Session) -> JSONResponse:
    """Upload an IFC file (IFC2X3, IFC4 or IFC4X3) and import it in the background. `source` names the import
    (default: the file's name); importing again under the same source updates the graph in place."""
    jobs: ImportJobs = request.app.state.twin_imports
    limit: int = request.app.state.twin_max_upload
    job_id, path = jobs.new_upload()
    try:
        upload = await _receive_file(request, path, limit)
        if upload.files == 0:
            raise ApiError(422, "validation_error", "no file: send it in a multipart field named `file`")
        if upload.size == 0:
            raise ApiError(422, "validation_error", "the file is empty")
        try:
            check_ifc_file(path)
        except IfcError as exc:
            raise ApiError(422, "invalid_ifc", str(exc)) from None
        source = (upload.fields.get("source") or "").strip() or _source_name(upload.filename or "")
        if len(source) > 128 or "\x00" in source:
            raise ApiError(422, "validation_error", "source must be at most 128 characters")
        filename = _source_name(upload.filename or source)[:255]
        audit.record(session, actor=principal.name, action="twin.import.started", target_type="twin_import",
                     target_id=job_id, details={"source": source, "filename": filename, "sizeBytes": upload.size},
                     ip=principal.ip)
        job = await jobs.submit(session, job_id, path, source=source, filename=filename, size_bytes=upload.size,
                                created_by=principal.name)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    body = ImportJobOut.model_validate(job_json(job)).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": f"/api/v1/twin/imports/{job_id}"})


@router.get("/imports", response_model=list[ImportJobOut])
async def list_imports(_: Admin, session: Session,
                       limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict[str, Any]]:
    """Recent import jobs, newest first."""
    return [job_json(job) for job in await list_jobs(session, limit)]


@router.get("/imports/{job_id}", response_model=ImportJobOut)
async def get_import(job_id: str, _: Admin, session: Session) -> dict[str, Any]:
    """One import job: status, progress and, when done, its report or error."""
    job = await get_job(session, job_id) if re.match(_JOB_ID, job_id) else None
    if job is None:
        raise not_found("import job")
    return job_json(job)
