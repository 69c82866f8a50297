"""The OpenAPI spec tells the truth: schemathesis runs against the app in-process, every check on.

Each operation of /openapi.json is called with a few generated requests, valid and invalid,
by a member of a group (the client of its planned session) and by an administrator: every
status must be documented, every body must follow its schema (errors: `Problem`), a request
valid by the spec must not be refused as invalid, and one the spec calls invalid must be
refused. Then the stateful phase chains operations (what one creates, the next uses).

The pages (api/web) and the live WebSocket are not in the spec. The few rules a JSON schema
cannot say (a contract is one sentence, a client is a member of the group...) answer 422 for
requests the schema takes: `RULES` names them, and only there is a 422 not a failure.

The schema's text patterns are checked against the validators themselves (`test_text_...`):
the pattern takes exactly what the service takes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from schemathesis.config import SchemathesisConfig
from starlette.types import Receive, Scope, Send

from api.main import create_app
from companion.assist.ask import MemoryQuestion
from companion.assist.ideas.schemas import ThemeLabel
from companion.config import Settings
from companion.text import LongText, Name
from tests.world import Api, Circle

EXAMPLES = 4  # per operation and phase: the contract, not a soak
SEED = 14
PREFIX = "/api/v1"
# What positive_data_acceptance takes for a request the schema takes (schemathesis' default).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

# Operations whose service checks a rule the schema cannot say: a 422 for a request the
# schema takes is their answer, not a lie.
RULES = {
    "POST /groups": "`facilitator_ids` name existing accounts",
    "POST /groups/{group_id}/members": "`user_id` names an existing account",
    "POST /groups/{group_id}/sessions": "the client and consultants are members; one turn each",
    "PUT /groups/{group_id}/sessions/{session_id}/contract": "the contract is one sentence",
    "POST /groups/{group_id}/sessions/{session_id}/action-plan/actions/{action_id}/progress": (
        "a progress note is not dated in the future"
    ),
    "PUT /groups/{group_id}/sessions/{session_id}/learnings/regulation/summary": (
        "each point cites learnings that exist"
    ),
    "POST /groups/{group_id}/sessions/{session_id}/themes/{theme_id}/merge": (
        "a theme is not merged into itself"
    ),
    "POST /groups/{group_id}/sessions/{session_id}/phases/{phase}/recordings": (
        "the file is decodable audio, not silence"
    ),
    "GET /groups/{group_id}/memory/search": "since/until are ISO 8601 and since <= until",
    "POST /groups/{group_id}/memory/ask": "since/until are ISO 8601 and since <= until",
}


@dataclass
class World:
    app: FastAPI
    api: Api
    circles: dict[str, Circle]  # one per identity: the administrator may delete theirs

    def token(self, who: str) -> str:
        return self.api.admin_token if who == "admin" else self.circles[who].client[1]


def _without_lifespan(app: FastAPI) -> Any:
    """The app for schemathesis, whose client would start a second lifespan: the module's
    TestClient runs the one (an app that refuses the lifespan scope has none, for it)."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("the test's TestClient runs the lifespan")
        await app(scope, receive, send)

    return asgi


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[World]:
    data = tmp_path_factory.mktemp("contract") / "data"
    data.mkdir()
    shutil.copyfile(sqlite_template, data / "companion.db")
    settings = Settings(data_dir=data, llm_local_model="off", assist_background=False)
    app = create_app(settings)
    with TestClient(app) as client:
        api = Api.bootstrap(client, settings)
        circles = {who: Circle.create(api) for who in ("member", "admin")}
        yield World(app, api, circles)


def _config(world: World, who: str) -> SchemathesisConfig:
    circle = world.circles[who]
    rules = [
        {
            "include-name": f"{name.split()[0]} {PREFIX}{name.split()[1]}",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
        }
        for name in RULES
    ]
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {world.token(who)}"},
            # The world's group, cycle and session: the calls reach past the 404.
            "parameters": {
                "path.group_id": circle.group_id,
                "path.cycle_id": circle.cycle_id,
                "path.session_id": circle.session_id,
            },
            "generation": {"max-examples": EXAMPLES, "deterministic": True},
            # No language model in this world: its operations answer the 503 they document
            # (status_code_conformance still checks each 503 is documented where it comes).
            "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
            "phases": {"stateful": {"max-steps": 6}},
            "operations": rules,
        }
    )


@pytest.fixture(scope="module", params=["member", "admin"])  # the admin may delete its group
def contract(request: pytest.FixtureRequest, world: World) -> Any:
    config = _config(world, request.param)
    return schemathesis.openapi.from_asgi(
        "/openapi.json", _without_lifespan(world.app), config=config
    )


schema = schemathesis.pytest.from_fixture("contract")


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_operation_follows_its_spec(case: Any) -> None:
    case.call_and_validate()


def test_stateful_sequences_follow_the_spec(contract: Any) -> None:
    machine = contract.as_state_machine()
    machine.run(
        settings=settings(
            max_examples=EXAMPLES * 5,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_the_spec_has_one_error_schema_and_no_pages(world: World) -> None:
    spec = world.app.openapi()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert set(schemas["Problem"]["properties"]) == {"detail", "errors"}
    for path, item in spec["paths"].items():
        assert path.startswith((PREFIX, "/healthz", "/readyz")), f"{path}: a page in the spec"
        assert not path.endswith("/live"), f"{path}: the WebSocket is not an HTTP operation"
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status[0] in "45" and path != "/readyz":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/Problem"), (method, path, status)
            if path.startswith(PREFIX):
                assert "401" in operation["responses"], (method, path)
            if "group_id" in path:
                assert "404" in operation["responses"], (method, path)


# --- the text patterns take exactly what the validators take ---------------------------------

EDGES = "ab é😅 \t\n\r\x00\x01\x0b\x0c\x1c\x1f\x7f\x85\xa0\u1680\u2000\u2028\u2029\u3000\ufeff"


def _texts(most: int) -> st.SearchStrategy[str]:
    """Strings around the limit with blanks and control characters at the ends and inside."""
    blanks = st.text(alphabet=" \t\n\x0b\u3000\x1c", max_size=3)
    core = st.integers(min_value=max(most - 2, 0), max_value=most + 1).map(lambda n: "x" * n)
    return st.one_of(
        st.text(alphabet=EDGES, max_size=12),
        st.builds(lambda a, b, c: a + b + c, blanks, core, blanks),
        st.builds(lambda a, b, c: a + b + c, blanks, core.map(lambda s: s[:-1] + "\x0b"), blanks),
    )


@pytest.mark.parametrize(
    ("kind", "adapter", "most"),
    [
        ("name", TypeAdapter(Name), 200),
        ("long text", TypeAdapter(LongText), 20_000),
        ("theme label", TypeAdapter(ThemeLabel), 80),
    ],
)
def test_text_patterns_take_what_the_validators_take(
    kind: str, adapter: TypeAdapter[str], most: int
) -> None:
    pattern = re.compile(adapter.json_schema()["pattern"])

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(_texts(most))
    def agree(text: str) -> None:
        try:
            adapter.validate_python(text)
            taken = True
        except ValidationError:
            taken = False
        assert taken == bool(pattern.search(text)), (kind, text)

    agree()


def test_a_question_pattern_takes_what_the_service_takes() -> None:
    from companion.assist.ask import check_question
    from companion.config import get_settings
    from companion.errors import Invalid

    field = MemoryQuestion.model_json_schema()["properties"]["question"]
    pattern = re.compile(field["pattern"])
    current = get_settings()

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(_texts(current.memory.max_query_chars))
    def agree(text: str) -> None:
        try:
            check_question(text, current)
            taken = True
        except Invalid:
            taken = False
        assert taken == bool(pattern.search(text)), text

    agree()
