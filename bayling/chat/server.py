"""``bayling-serve``: an OpenAI-compatible chat-completions endpoint on FastAPI + uvicorn (the CPU fallback).

Why this shape: existing tools speak OpenAI's chat-completions schema, so the server accepts exactly that
request body (plus vLLM's ``top_k`` / ``repetition_penalty`` extensions) and answers in the same shapes,
streamed as server-sent events when ``stream`` is true. On a GPU, vLLM's own server is the right tool
(bayling.chat.vllm builds its command). A malformed request gets a 4xx with OpenAI's error object
(``{"error": {"message", "type", "param", "code"}}``), naming the offending field; a parameter this server
cannot honour is refused, never silently ignored. Requests are served concurrently but generate one at a
time (one model); a client that disconnects mid-stream stops its generation after the current token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from bayling.chat.model import ChatModel, Generation, Sampling
from bayling.errors import BaylingError

log = logging.getLogger("bayling.serve")

# Request keys that change nothing here (bookkeeping in OpenAI's API): accepted and not used.
IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "prediction"}
# Keys accepted only at their neutral value; anything else would silently change the protocol.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "presence_penalty": (0, 0.0), "frequency_penalty": (0, 0.0), "logprobs": (False,), "top_logprobs": (0,),
    "logit_bias": ({},), "stop": ("", []), "tools": ([],), "tool_choice": ("none",),
    "response_format": ({"type": "text"},), "modalities": (["text"],),
}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. "name"
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    @model_validator(mode="after")
    def _unicode(self) -> ChatMessage:
        try:  # JSON can carry lone surrogates ("\\udcff") that no tokenizer accepts
            self.text().encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"content is not valid Unicode ({err.reason} at character {err.start})") from None
        return self


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's chat-completions body; unknown keys are refused unless listed in IGNORED/NEUTRAL."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    repetition_penalty: float | None = Field(None, gt=0)
    n: int | None = Field(None, ge=1, le=1, description="one choice per request")
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> ChatRequest:
        late = [i for i, m in enumerate(self.messages) if m.role == "system" and i > 0]
        if late:  # the templates render a system prompt only first; a later one would silently vanish
            raise ValueError(f"messages.{late[0]}: a system message is only allowed first")
        for key, value in (self.model_extra or {}).items():
            if key in IGNORED or value is None or value in NEUTRAL.get(key, ()):
                continue
            if key in NEUTRAL:
                raise ValueError(f"{key}={json.dumps(value)} is not supported by bayling-serve "
                                 f"(only {json.dumps(NEUTRAL[key][0])})")
            raise ValueError(f"unknown parameter '{key}'")
        return self


def error(status: int, message: str, *, param: str | None = None, code: str | None = None,
          kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return error(400, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'bad JSON')})")
    msg = first.get("msg", "invalid value").removeprefix("Value error, ")
    return error(400, f"{param or 'request body'}: {msg}", param=param)


def _not_utf8(request: Request, exc: UnicodeDecodeError) -> JSONResponse:
    return error(400, f"the request body is not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})")


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error while serving %s", request.url.path)
    return error(500, f"internal error: {type(exc).__name__}", kind="server_error")


def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error(exc.status_code, str(exc.detail), kind="not_found_error" if exc.status_code == 404 else
                 "invalid_request_error")


def create_app(chat: ChatModel, *, served_name: str, defaults: Sampling) -> FastAPI:
    """The ASGI app serving ``chat`` as model ``served_name``; ``defaults`` fill absent sampling fields."""
    app = FastAPI(title="bayling-serve", docs_url=None, redoc_url=None)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(UnicodeDecodeError, _not_utf8)
    app.add_exception_handler(Exception, _internal_error)
    created = int(time.time())

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": served_name}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list",
                "data": [{"id": served_name, "object": "model", "created": created, "owned_by": "bayling"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest):
        if req.model != served_name:
            return error(404, f"the model '{req.model}' does not exist; this server serves '{served_name}'",
                         param="model", code="model_not_found", kind="not_found_error")
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            prompt = await run_in_threadpool(chat.prompt_ids, messages)
        except BaylingError as err:
            return error(400, str(err), param="messages")
        room = chat.context - len(prompt)
        asked = req.max_completion_tokens or req.max_tokens
        max_new = asked if asked is not None else min(defaults.max_new_tokens, room)
        if room < 1 or max_new > room:
            return error(400, f"the prompt is {len(prompt)} tokens and {max_new} new tokens were asked for; "
                         f"the model's context is {chat.context} tokens", param="messages",
                         code="context_length_exceeded")
        sampling = Sampling(
            temperature=defaults.temperature if req.temperature is None else req.temperature,
            top_p=defaults.top_p if req.top_p is None else req.top_p,
            top_k=defaults.top_k if req.top_k is None else req.top_k,
            repetition_penalty=defaults.repetition_penalty if req.repetition_penalty is None
            else req.repetition_penalty,
            max_new_tokens=max_new, seed=req.seed if req.seed is not None else defaults.seed)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        gen = Generation(chat, prompt, sampling, threading.Event())
        if req.stream:
            usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_sse(gen, rid, served_name, usage), media_type="text/event-stream")
        text = await run_in_threadpool(lambda: "".join(gen))
        _log_done(rid, gen)
        return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": served_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": gen.finish_reason, "logprobs": None}],
                "usage": _usage(gen)}

    return app


def _usage(gen: Generation) -> dict:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens}


def _log_done(rid: str, gen: Generation) -> None:
    log.info("%s: %d prompt tokens, %d new tokens, finish_reason=%s", rid, gen.prompt_tokens,
             gen.completion_tokens, gen.finish_reason)


async def _sse(gen: Generation, rid: str, model: str, include_usage: bool):
    """OpenAI's stream: a role chunk, content chunks, a finish chunk, [usage chunk], ``data: [DONE]``."""
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    pieces = iter(gen)
    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        while (piece := await run_in_threadpool(next, pieces, None)) is not None:
            yield chunk({"content": piece})
        yield chunk({}, gen.finish_reason)
        if include_usage:
            body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": _usage(gen)}
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"
        finished = True
        _log_done(rid, gen)
    finally:
        if not finished:
            gen.stop()  # the client went away: free the model after the current token
            log.info("%s: client disconnected after %d characters; cancelling", rid, len(gen.text))
            # No await here (the task is being cancelled): a thread logs once the worker has stopped.
            threading.Thread(target=lambda: (gen.wait(), _log_done(rid, gen)), daemon=True).start()
