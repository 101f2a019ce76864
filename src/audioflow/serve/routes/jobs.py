"""Jobs for long inputs (:mod:`audioflow.serve.long_jobs`): submit, follow, fetch the result and its files,
cancel. Each job belongs to the API key that made it."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from ..inputs import Problem
from ..jobs import check_header
from ..long_jobs import JobBoard, job_steps
from ..settings import matching_key, owner_of
from .common import authorize, receive_audio, runner_of, settings_of

router = APIRouter(prefix="/v1/jobs", dependencies=[Depends(authorize)], tags=["jobs"])
DEFAULT_STEPS = "vad,diarize,transcribe"


def board_of(request: Request) -> JobBoard:
    return request.app.state.jobs


def owner(request: Request) -> str:
    return owner_of(matching_key(settings_of(request), request.headers))


@router.post("", status_code=202)
async def submit(request: Request,
                 steps: Annotated[str | None, Query(max_length=2000, description="the steps as in `audioflow process "
                                                    "-s` (default vad,diarize,transcribe)")] = None,
                 ) -> dict[str, Any]:
    """Submit audio (any form the other endpoints take, up to ``max_job_body_bytes``) and its steps; the answer
    comes at once with the job's id: follow it at ``GET /v1/jobs/{id}``."""
    settings = settings_of(request)
    pairs = job_steps(steps or DEFAULT_STEPS, settings)  # bad steps are refused before the body is read
    upload = await receive_audio(request)
    try:
        if upload.size == 0:
            raise Problem(400, "no audio in the request (send a file, a raw audio body, or a url)", param="file")
        await asyncio.to_thread(check_header, upload.path, upload.name, runner_of(request).limits,
                                settings.max_job_duration, "for a job")
        return await asyncio.to_thread(board_of(request).submit, upload, pairs, owner(request))
    finally:
        upload.discard()  # moved into the job's folder when submitted


@router.get("")
async def list_jobs(request: Request) -> dict[str, Any]:
    """The caller's jobs, oldest first."""
    return {"jobs": await asyncio.to_thread(board_of(request).list, owner(request))}


@router.get("/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    """A job's state (queued, running, done, failed, cancelled) and progress (seconds of audio done, and as a
    fraction)."""
    return await asyncio.to_thread(board_of(request).get, job_id, owner(request))


@router.get("/{job_id}/result")
async def get_result(request: Request, job_id: str) -> Any:
    """The finished job's result: what ``audioflow process`` writes to ``results/<id>.json`` (409 before)."""
    return await asyncio.to_thread(board_of(request).result, job_id, owner(request))


@router.get("/{job_id}/files/{name:path}")
async def get_file(request: Request, job_id: str, name: str) -> FileResponse:
    """A file the job wrote, by its path in the result's ``files`` (``transcribe/input.srt``)."""
    path = await asyncio.to_thread(board_of(request).file, job_id, owner(request), name)
    return FileResponse(path, filename=path.name)


@router.delete("/{job_id}")
async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    """Cancel a queued or running job; delete a finished one with its files."""
    return await asyncio.to_thread(board_of(request).cancel, job_id, owner(request))
