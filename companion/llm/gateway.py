"""The one gateway for every model call: the group's policy, timeouts, retries, structured
answers, and an audit row for every request (allowed, refused or failed), never with content.

    gateway = LLMGateway(settings, sessions)
    summary = gateway.complete(group, "synthesis", [Message("user", "...")], Synthesis)

The endpoint is any OpenAI-compatible server (vLLM, Ollama, llama.cpp server...). The HTTP
client is the guarded one of companion.llm.transport, so the policy holds at the socket.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, overload

import httpx
import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from companion.config import Settings
from companion.errors import DomainError
from companion.llm import audit
from companion.llm.errors import (
    ModelCallFailed,
    ModelError,
    ModelOutputInvalid,
    ModelUnavailable,
    PolicyRefused,
)
from companion.llm.policy import Resolver, host_of, system_resolver
from companion.llm.transport import guarded_client
from companion.method.phases import Language
from companion.method.policy import Policy
from companion.prompts import prompt

T = TypeVar("T", bound=BaseModel)
Progress = Callable[[int], None]  # called with the number of chunks streamed so far
R = TypeVar("R")

CONNECT_TIMEOUT_S = 5.0  # a server that is down answers at once; one that is gone, within this
RETRY_BACKOFF_S = 0.5  # times the attempt number
MAX_PURPOSE = 40

# The gateway's own instructions (prompts/gateway/): in English, whatever the group's language,
# since they speak to the model about the format, not to people.


def _instruction(name: str, **values: str) -> str:
    return prompt("gateway", name, Language.en).render(**values).strip()


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


class GroupRef(Protocol):
    """What the gateway needs of a group (companion.store.models.Group has both)."""

    @property
    def id(self) -> str: ...

    @property
    def policy(self) -> str: ...


class _InvalidAnswer(Exception):
    def __init__(self, text: str, problem: str) -> None:
        super().__init__(problem)
        self.text = text
        self.problem = problem


_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*(.*?)\s*```\s*$", re.DOTALL)


def _strip_fence(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def _problem(exc: ValidationError) -> str:
    """What is wrong, without echoing the answer (it may quote session content)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "answer"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _param(message: Message) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}


def narrowed(model: type[T], edit: Callable[[dict[str, Any]], None]) -> type[T]:
    """`model`, whose JSON schema (sent as the response format) is changed by `edit`: tighter
    bounds for one request, which a server decoding under the schema (llama.cpp makes it a
    grammar) then cannot leave. Validation stays `model`'s: the caller's checks decide."""

    class Narrowed(model):  # type: ignore[valid-type,misc]
        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
            schema: dict[str, Any] = super().model_json_schema(*args, **kwargs)
            edit(schema)
            return schema

    Narrowed.__name__ = Narrowed.__qualname__ = model.__name__
    return Narrowed


def _json_schema_format(schema: type[BaseModel]) -> ResponseFormatJSONSchema:
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()},
    }


def _gather(stream: Iterable[ChatCompletionChunk], progress: Progress) -> ChatCompletion:
    """A streamed answer put back together (content, finish reason, usage), for the same
    parsing and audit as an answer in one piece."""
    parts: list[str] = []
    finish: str | None = None
    usage = None
    last: ChatCompletionChunk | None = None
    for chunk in stream:
        last = chunk
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
                progress(len(parts))
            finish = choice.finish_reason or finish
    return ChatCompletion.model_validate(
        {
            "id": last.id if last else "stream",
            "object": "chat.completion",
            "created": last.created if last else int(time.time()),
            "model": last.model if last else "",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(parts)},
                    "finish_reason": finish or "stop",
                }
            ],
            "usage": usage.model_dump() if usage else None,
        }
    )


def _domain_cause(exc: BaseException) -> DomainError | None:
    """A policy refusal (or unresolvable host) raised in the transport, under openai's wrapper."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, DomainError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class LLMGateway:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        resolver: Resolver = system_resolver,
    ) -> None:
        if not settings.llm.base_url:
            raise ValueError("the gateway needs llm_base_url (the app sets the local server's)")
        self.settings = settings
        self.host = host_of(settings.llm.base_url)
        self._sessions = sessions
        self._schema_in_prompt = False  # set once the server refuses JSON-schema formats
        timeout = httpx.Timeout(
            settings.llm.timeout_s, connect=min(settings.llm.timeout_s, CONNECT_TIMEOUT_S)
        )
        ssl_context = httpx.create_ssl_context()
        self._clients = {
            policy: OpenAI(
                base_url=settings.llm.base_url,
                api_key=settings.llm.api_key.get_secret_value() or "none",
                timeout=timeout,
                max_retries=0,  # retries are the gateway's, so each one is audited
                http_client=guarded_client(
                    policy,
                    timeout=timeout,
                    allowlist=settings.llm.allowlist,
                    resolver=resolver,
                    ssl_context=ssl_context,
                ),
            )
            for policy in Policy
        }

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    @overload
    def complete(
        self,
        group: GroupRef,
        purpose: str,
        messages: Sequence[Message],
        schema: None = None,
        *,
        progress: Progress | None = None,
        temperature: float | None = None,
    ) -> str: ...

    @overload
    def complete(
        self,
        group: GroupRef,
        purpose: str,
        messages: Sequence[Message],
        schema: type[T],
        *,
        progress: Progress | None = None,
        temperature: float | None = None,
    ) -> T: ...

    def complete(
        self,
        group: GroupRef,
        purpose: str,
        messages: Sequence[Message],
        schema: type[T] | None = None,
        *,
        progress: Progress | None = None,
        temperature: float | None = None,
    ) -> str | T:
        """The model's answer: text, or an instance of `schema` validated (one retry with the
        validation problem appended, then ModelOutputInvalid).

        With `progress`, the answer is streamed and `progress(chunks)` is called as it comes
        (for long answers: the caller can show that the model is writing, and the timeout
        applies between chunks rather than to the whole answer). `temperature` replaces the
        configured one for this call (a retry that wants other answers than the first).

        Raises PolicyRefused (409), ModelUnavailable (503), ModelCallFailed or
        ModelOutputInvalid (502). Every request made is audited in `model_calls`.
        """
        if not 0 < len(purpose) <= MAX_PURPOSE:
            raise ValueError(f"purpose must be 1 to {MAX_PURPOSE} characters")
        history = list(messages)
        if schema is None:
            return self._request(
                group,
                purpose,
                history,
                None,
                lambda text: text,
                progress=progress,
                temperature=temperature,
            )
        validated = schema  # bound for the closure

        def parse(text: str) -> T:
            return validated.model_validate_json(_strip_fence(text))

        def attempt() -> T:  # the same call, with the history as it then stands
            return self._structured(
                group,
                purpose,
                history,
                validated,
                parse,
                progress=progress,
                temperature=temperature,
            )

        try:
            return attempt()
        except _InvalidAnswer as first:
            history += [
                Message("assistant", first.text),
                Message("user", _instruction("retry", problem=first.problem)),
            ]
        try:
            return attempt()
        except _InvalidAnswer as second:
            raise ModelOutputInvalid(
                f"The model's answer for '{purpose}' did not match {schema.__name__}, twice "
                f"(last problem: {second.problem}). Retry, or configure a stronger model "
                "(COMPANION_LLM_MODEL, COMPANION_LLM_BASE_URL)."
            ) from None

    def _structured(
        self,
        group: GroupRef,
        purpose: str,
        history: list[Message],
        schema: type[T],
        parse: Callable[[str], T],
        *,
        progress: Progress | None,
        temperature: float | None = None,
    ) -> T:
        """With a JSON-schema response format; once the server has refused the format (HTTP
        400) and taken the same request without it, with the schema in the prompt instead."""
        if not self._schema_in_prompt:
            try:
                return self._request(
                    group,
                    purpose,
                    history,
                    schema,
                    parse,
                    progress=progress,
                    temperature=temperature,
                )
            except ModelCallFailed as exc:
                if exc.kind != "http_400":
                    raise
        instruction = Message(
            "system", _instruction("schema", schema=json.dumps(schema.model_json_schema()))
        )
        try:
            result = self._request(
                group,
                purpose,
                [instruction, *history],
                None,
                parse,
                progress=progress,
                temperature=temperature,
            )
        except _InvalidAnswer:
            self._schema_in_prompt = True  # the request itself was taken
            raise
        self._schema_in_prompt = True
        return result

    def _request(
        self,
        group: GroupRef,
        purpose: str,
        history: list[Message],
        schema: type[BaseModel] | None,
        parse: Callable[[str], R],
        *,
        progress: Progress | None = None,
        temperature: float | None = None,
    ) -> R:
        """One answer, retried (bounded, with backoff) while the server is unavailable."""
        attempts = self.settings.llm.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(
                    group,
                    purpose,
                    history,
                    schema,
                    parse,
                    progress=progress,
                    temperature=temperature,
                )
            except ModelUnavailable:
                if attempt == attempts:
                    raise
            time.sleep(RETRY_BACKOFF_S * attempt)
        raise AssertionError("unreachable")

    def _attempt(
        self,
        group: GroupRef,
        purpose: str,
        history: list[Message],
        schema: type[BaseModel] | None,
        parse: Callable[[str], R],
        *,
        progress: Progress | None = None,
        temperature: float | None = None,
    ) -> R:
        """One request to the model, audited whatever happens."""
        started = time.monotonic()
        completion: ChatCompletion | None = None
        text = ""
        try:
            completion = self._send(group, history, schema, progress, temperature)
            if completion.choices:
                text = completion.choices[0].message.content or ""
            result = parse(text)
        except BaseException as exc:
            self._audit(group, purpose, started, completion, exc)
            if isinstance(exc, ValidationError):
                raise _InvalidAnswer(text, _problem(exc)) from None
            raise
        self._audit(group, purpose, started, completion, None)
        return result

    def _send(
        self,
        group: GroupRef,
        history: list[Message],
        schema: type[BaseModel] | None,
        progress: Progress | None = None,
        temperature: float | None = None,
    ) -> ChatCompletion:
        client = self._clients[Policy(group.policy)]
        if temperature is None:
            temperature = self.settings.llm.temperature
        messages = [_param(m) for m in history]
        model = self.settings.llm.model
        where = f"The model server at {self.host}"
        response_format = _json_schema_format(schema) if schema else openai.omit
        try:
            # Bounded and near-deterministic: assistance wants short, checkable answers.
            if progress is None:
                return client.chat.completions.create(
                    model=model,
                    messages=messages,
                    max_completion_tokens=self.settings.llm.max_tokens,
                    temperature=temperature,
                    response_format=response_format,
                )
            stream = client.chat.completions.create(
                model=model,
                messages=messages,
                max_completion_tokens=self.settings.llm.max_tokens,
                temperature=temperature,
                response_format=response_format,
                stream=True,
                stream_options={"include_usage": True},
            )
            try:
                return _gather(stream, progress)
            finally:  # also when `progress` gives up: the server stops writing
                stream.close()
        except (openai.APITimeoutError, httpx.TimeoutException):  # the latter: mid-stream
            raise ModelUnavailable(
                f"{where} did not answer within {self.settings.llm.timeout_s:g} s "
                "(COMPANION_LLM_TIMEOUT_S). It may be overloaded: retry in a minute.",
                "timeout",
            ) from None
        except (openai.APIConnectionError, httpx.TransportError) as exc:  # the latter: mid-stream
            cause = _domain_cause(exc)
            if cause is not None:
                raise cause from None
            raise ModelUnavailable(
                f"{where} cannot be reached (COMPANION_LLM_BASE_URL="
                f"{self.settings.llm.base_url}). Check that it is running, then retry.",
                "unreachable",
            ) from None
        except openai.APIStatusError as exc:
            code = exc.status_code
            if code == 429 or code >= 500:
                raise ModelUnavailable(
                    f"{where} is unavailable (HTTP {code}). Retry in a minute.", f"http_{code}"
                ) from None
            raise ModelCallFailed(
                f"{where} refused the request (HTTP {code}): check COMPANION_LLM_MODEL "
                f"('{model}'), COMPANION_LLM_API_KEY and COMPANION_LLM_BASE_URL.",
                f"http_{code}",
            ) from None

    def _audit(
        self,
        group: GroupRef,
        purpose: str,
        started: float,
        completion: ChatCompletion | None,
        error: BaseException | None,
    ) -> None:
        usage = completion.usage if completion is not None else None
        kind: str | None = None
        if isinstance(error, ValidationError):
            kind = "invalid_output"
        elif isinstance(error, ModelError | PolicyRefused):
            kind = error.kind
        elif error is not None:
            kind = "internal"
        with self._sessions() as db, db.begin():
            audit.record(
                db,
                group_id=group.id,
                purpose=purpose,
                endpoint_host=self.host,
                model=self.settings.llm.model,
                policy=group.policy,
                decision="refused" if isinstance(error, PolicyRefused) else "allowed",
                error=kind,
                duration_ms=round((time.monotonic() - started) * 1000),
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                cancelled=isinstance(error, ModelError) and error.cancelled,
            )
