"""The LLM gateway: the on-prem policy enforced before any connection, structured answers with
one retry, failures mapped to clear errors, and an audit row for every model call.

No test sends a byte to a non-loopback address: public hosts are given fake DNS answers, and
the only server is tests/doubles/openai_double.py, a test double on 127.0.0.1.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpcore
import pytest
from pydantic import BaseModel, Field
from sqlalchemy import select, text

from companion.assist.synthesis.runs import DraftSuperseded
from companion.config import Settings
from companion.llm.errors import (
    ModelCallFailed,
    ModelOutputInvalid,
    ModelUnavailable,
    PolicyRefused,
)
from companion.llm.gateway import LLMGateway, Message
from companion.llm.policy import decide, is_on_prem_address, system_resolver
from companion.llm.transport import GuardedBackend
from companion.method.policy import Policy
from companion.runtime import Store, open_store
from companion.store.models import Group, ModelCall
from tests.doubles.openai_double import OpenAIDouble
from tests.world import Api

PUBLIC_DNS = {
    "api.openai.com": ["162.159.140.245", "2606:4700:4400::6812:2"],
    "mixed.example": ["10.0.0.5", "8.8.8.8"],
    "llm.internal": ["127.0.0.1"],
    "gpu.example.com": ["203.0.113.7"],
}
PROMPT = [Message("system", "Tu es un assistant."), Message("user", "Le plan secret de Zoé")]


def fake_resolver(host: str, port: int) -> list[str]:
    """DNS answers from PUBLIC_DNS; nothing is looked up for real."""
    if host not in PUBLIC_DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return PUBLIC_DNS[host]


@dataclass
class G:
    id: str
    policy: str = "on_prem"


class Verdict(BaseModel):
    title: str
    score: int = Field(ge=1, le=5)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings)
    yield opened
    opened.engine.dispose()


@pytest.fixture
def group() -> G:
    return G(str(uuid.uuid4()))


def gateway(settings: Settings, store: Store, base_url: str, **overrides: object) -> LLMGateway:
    cfg = settings.updated(**{"llm_base_url": base_url, **overrides})
    return LLMGateway(cfg, store.sessions, resolver=fake_resolver)


def calls(store: Store, group_id: str) -> list[ModelCall]:
    with store.sessions() as db:
        query = select(ModelCall).where(ModelCall.group_id == group_id).order_by(ModelCall.at)
        return list(db.scalars(query))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[object]:
    """Records (and blocks) every connection attempt and name lookup made from Python."""
    with store.sessions() as db:  # the database connection is opened before the blockade
        db.execute(text("SELECT 1"))
    attempts: list[object] = []

    def blocked(*args: object, **_kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr(socket.socket, "connect_ex", blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)
    return attempts


# --- (a) a public host under on_prem: refused before any connection, and audited -----------


def test_on_prem_refuses_a_public_host_without_connecting(settings, store, group, no_network):
    gw = gateway(settings, store, "https://api.openai.com/v1")
    with pytest.raises(PolicyRefused) as refused:
        gw.complete(group, "clarity", PROMPT, Verdict)
    message = str(refused.value)
    assert refused.value.status == 409
    assert "'api.openai.com'" in message
    assert "on_prem" in message
    assert "162.159.140.245" in message
    assert "cloud_allowed" in message
    assert "COMPANION_LLM_BASE_URL" in message
    assert no_network == []

    [row] = calls(store, group.id)
    assert (row.decision, row.outcome, row.error) == ("refused", "error", "policy")
    assert (row.endpoint_host, row.model, row.policy, row.purpose) == (
        "api.openai.com",
        "local",
        "on_prem",
        "clarity",
    )
    assert row.prompt_tokens is None
    assert row.completion_tokens is None


def test_a_name_with_one_public_address_is_refused_and_nothing_is_sent(
    settings, store, group, no_network
):
    with OpenAIDouble() as double:
        gw = gateway(settings, store, f"http://mixed.example:{double.port}/v1")
        with pytest.raises(PolicyRefused, match=r"8\.8\.8\.8"):
            gw.complete(group, "clarity", PROMPT)
        assert double.received == []
    assert no_network == []


def test_an_unresolvable_host_is_refused_under_on_prem(settings, store, group, no_network):
    gw = gateway(settings, store, "http://nowhere.invalid/v1")
    with pytest.raises(PolicyRefused, match="cannot be resolved"):
        gw.complete(group, "clarity", PROMPT)
    assert calls(store, group.id)[0].decision == "refused"


# --- (b) a loopback endpoint goes through -------------------------------------------------


def test_a_loopback_endpoint_answers_a_validated_object(settings, store, group):
    with OpenAIDouble() as double:
        double.reply('{"title": "Déléguer", "score": 4}', prompt_tokens=42, completion_tokens=9)
        result = gateway(settings, store, double.url).complete(group, "synthesis", PROMPT, Verdict)
    assert result == Verdict(title="Déléguer", score=4)

    [request] = double.received
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "local"
    assert request.body["messages"][1] == {"role": "user", "content": "Le plan secret de Zoé"}
    fmt = request.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Verdict"
    assert fmt["json_schema"]["schema"] == Verdict.model_json_schema()

    [row] = calls(store, group.id)
    assert (row.decision, row.outcome, row.error) == ("allowed", "ok", None)
    assert (row.prompt_tokens, row.completion_tokens) == (42, 9)
    assert (row.endpoint_host, row.purpose) == ("127.0.0.1", "synthesis")
    assert row.duration_ms >= 0
    stored = " ".join(str(v) for v in vars(row).values())
    assert "secret" not in stored
    assert "Déléguer" not in stored


def test_a_streamed_answer_reports_progress_and_is_validated_and_audited(settings, store, group):
    seen: list[int] = []
    with OpenAIDouble() as double:
        double.reply('{"title": "Déléguer pas à pas", "score": 4}', completion_tokens=13)
        result = gateway(settings, store, double.url).complete(
            group, "synthesis", PROMPT, Verdict, progress=seen.append
        )
    assert result == Verdict(title="Déléguer pas à pas", score=4)
    assert double.received[0].body["stream"] is True
    assert seen == sorted(seen)
    assert len(seen) >= 5  # the double streams 8 characters a chunk
    [row] = calls(store, group.id)
    assert (row.outcome, row.completion_tokens) == ("ok", 13)  # usage from the last chunk


def test_a_run_given_up_on_purpose_is_audited_as_cancelled(settings, store, group):
    def give_up(chunks: int) -> None:
        if chunks >= 2:
            raise DraftSuperseded("newer ideas")

    with OpenAIDouble() as double:
        double.reply('{"title": "Déléguer pas à pas", "score": 4}')
        with pytest.raises(DraftSuperseded):
            gateway(settings, store, double.url).complete(
                group, "synthesis", PROMPT, Verdict, progress=give_up
            )
    [row] = calls(store, group.id)
    assert (row.outcome, row.error) == ("cancelled", "superseded")


def test_a_streamed_invalid_answer_is_retried_like_any_other(settings, store, group):
    with OpenAIDouble() as double:
        double.reply("not json at all")
        double.reply('{"title": "Déléguer", "score": 2}')
        result = gateway(settings, store, double.url).complete(
            group, "synthesis", PROMPT, Verdict, progress=lambda _n: None
        )
    assert result.score == 2
    assert [r.outcome for r in calls(store, group.id)] == ["error", "ok"]


def test_text_answers_and_fenced_json(settings, store, group):
    with OpenAIDouble() as double:
        double.reply("Bonjour")
        double.reply('```json\n{"title": "t", "score": 1}\n```')
        gw = gateway(settings, store, double.url)
        assert gw.complete(group, "chat", PROMPT) == "Bonjour"
        assert gw.complete(group, "chat", PROMPT, Verdict) == Verdict(title="t", score=1)
    assert "response_format" not in double.received[0].body


def test_the_client_connects_to_the_checked_address_not_the_name(
    settings, store, group, monkeypatch
):
    looked_up: list[object] = []
    real = socket.getaddrinfo

    def recording(host, *args, **kwargs):
        looked_up.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    with OpenAIDouble() as double:
        gw = gateway(settings, store, f"http://llm.internal:{double.port}/v1")
        assert gw.complete(group, "chat", PROMPT) == "ok"
        assert double.received[0].headers["Host"] == f"llm.internal:{double.port}"
    assert "llm.internal" not in looked_up  # resolved once, by the policy's resolver


def test_redirects_are_not_followed(settings, store, group):
    with OpenAIDouble() as elsewhere, OpenAIDouble() as double:
        target = f"{elsewhere.url}/chat/completions"
        double.reply(status=307, headers={"Location": target})
        with pytest.raises(ModelCallFailed, match="HTTP 307"):
            gateway(settings, store, double.url).complete(group, "chat", PROMPT)
        assert elsewhere.received == []


def test_a_server_without_json_schema_gets_the_schema_in_the_prompt(settings, store, group):
    with OpenAIDouble(rejects_json_schema=True) as double:
        double.reply('{"title": "t", "score": 2}')
        double.reply('{"title": "u", "score": 3}')
        gw = gateway(settings, store, double.url)
        assert gw.complete(group, "chat", PROMPT, Verdict).score == 2
        assert gw.complete(group, "chat", PROMPT, Verdict).score == 3  # remembered: no 400
    first, second, third = double.received
    assert "response_format" in first.body
    assert "response_format" not in second.body
    assert "response_format" not in third.body
    assert '"score"' in second.body["messages"][0]["content"]
    errors = sorted(str(r.error) for r in calls(store, group.id))
    assert errors == ["None", "None", "http_400"]


# --- (c) invalid output: one retry with the problem, then ModelOutputInvalid --------------


def test_invalid_output_twice_raises_model_output_invalid(settings, store, group):
    with OpenAIDouble() as double:
        double.reply('{"title": "le plan secret", "score": 9}')
        double.reply("pas du JSON")
        gw = gateway(settings, store, double.url)
        with pytest.raises(ModelOutputInvalid) as invalid:
            gw.complete(group, "synthesis", PROMPT, Verdict)
    assert invalid.value.status == 502
    assert "Verdict" in str(invalid.value)
    assert "JSON" in str(invalid.value)
    assert "secret" not in str(invalid.value)  # the answer is not echoed
    retry = double.received[1].body["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"title": "le plan secret", "score": 9}'}
    assert retry[-1]["role"] == "user"
    assert "score" in retry[-1]["content"]
    rows = calls(store, group.id)
    assert [(r.outcome, r.error) for r in rows] == [("error", "invalid_output")] * 2
    assert all(r.prompt_tokens == 11 for r in rows)


def test_invalid_then_valid_output_succeeds(settings, store, group):
    with OpenAIDouble() as double:
        double.reply('{"title": "t"}')
        double.reply('{"title": "t", "score": 3}')
        result = gateway(settings, store, double.url).complete(group, "synthesis", PROMPT, Verdict)
    assert result == Verdict(title="t", score=3)
    assert len(double.received) == 2
    assert sorted(str(r.error) for r in calls(store, group.id)) == ["None", "invalid_output"]


# --- (d) a server that is down, slow or failing --------------------------------------------


def test_a_server_that_is_down_raises_model_unavailable_quickly(settings, store, group):
    gw = gateway(settings, store, f"http://127.0.0.1:{closed_port()}/v1", llm_retries=1)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as down:
        gw.complete(group, "synthesis", PROMPT)
    assert time.monotonic() - started < 5
    assert down.value.status == 503
    assert "retry" in str(down.value).lower()
    rows = calls(store, group.id)
    assert [(r.decision, r.outcome, r.error) for r in rows] == [
        ("allowed", "error", "unreachable")
    ] * 2


def test_a_slow_server_times_out(settings, store, group):
    with OpenAIDouble() as double:
        double.reply(delay_s=2)
        gw = gateway(settings, store, double.url, llm_timeout_s=0.2, llm_retries=0)
        started = time.monotonic()
        with pytest.raises(ModelUnavailable, match=r"did not answer within 0\.2 s"):
            gw.complete(group, "synthesis", PROMPT)
        assert time.monotonic() - started < 1.5
    assert [r.error for r in calls(store, group.id)] == ["timeout"]


def test_a_server_error_is_retried_once(settings, store, group):
    with OpenAIDouble() as double:
        double.reply(status=503)
        double.reply("enfin")
        assert gateway(settings, store, double.url).complete(group, "chat", PROMPT) == "enfin"
    assert sorted(str(r.error) for r in calls(store, group.id)) == ["None", "http_503"]


def test_a_refusal_by_the_server_is_not_retried(settings, store, group):
    with OpenAIDouble() as double:
        double.reply(status=401)
        with pytest.raises(ModelCallFailed, match="COMPANION_LLM_API_KEY"):
            gateway(settings, store, double.url).complete(group, "chat", PROMPT)
        assert len(double.received) == 1
    assert [r.error for r in calls(store, group.id)] == ["http_401"]


# --- (e) the address classification and the on_prem decision (fake DNS only) --------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.10.20.30",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.10",
        "169.254.10.20",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:10.0.0.1",
    ],
)
def test_on_prem_addresses(address):
    assert is_on_prem_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "2001:4860::8888",
        "172.32.0.1",
        "100.64.0.1",
        "192.0.2.1",
        "2001:db8::1",
        "0.0.0.0",
        "::",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "not-an-address",
    ],
)
def test_public_or_odd_addresses(address):
    assert not is_on_prem_address(address)


def test_every_resolved_address_must_be_on_prem():
    assert decide(Policy.on_prem, "llm.internal", 80, resolver=fake_resolver) == ["127.0.0.1"]
    with pytest.raises(PolicyRefused) as refused:
        decide(Policy.on_prem, "mixed.example", 80, resolver=fake_resolver)
    assert refused.value.host == "mixed.example"
    assert "8.8.8.8" in str(refused.value)
    assert "10.0.0.5" not in str(refused.value)


def test_the_system_resolver_asks_for_ipv4_and_ipv6(monkeypatch):
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.0.9", 80)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:4860::8888", 80, 0, 0)),
    ]
    asked: list[tuple[object, ...]] = []

    def fake_getaddrinfo(host, port, family=0, type=0, *rest):
        asked.append((host, port, family))
        return answers

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert system_resolver("dual.example", 80) == ["192.168.0.9", "2001:4860::8888"]
    assert asked == [("dual.example", 80, 0)]  # AF_UNSPEC: both families
    with pytest.raises(PolicyRefused, match="2001:4860::8888"):
        decide(Policy.on_prem, "dual.example", 80)


def test_ip_literals_are_judged_without_a_lookup():
    def no_lookup(host: str, port: int) -> list[str]:
        raise AssertionError(f"looked up {host}")

    assert decide(Policy.on_prem, "[::1]", 80, resolver=no_lookup) == ["::1"]
    assert decide(Policy.on_prem, "192.168.1.2", 80, resolver=no_lookup) == ["192.168.1.2"]
    with pytest.raises(PolicyRefused):
        decide(Policy.on_prem, "8.8.8.8", 443, resolver=no_lookup)


def test_the_operator_allowlist():
    host = "gpu.example.com"
    with pytest.raises(PolicyRefused):
        decide(Policy.on_prem, host, 443, resolver=fake_resolver)
    by_name = decide(
        Policy.on_prem, host, 443, allowlist=["GPU.Example.com."], resolver=fake_resolver
    )
    assert by_name == ["203.0.113.7"]
    by_net = decide(Policy.on_prem, host, 443, allowlist=["203.0.113.0/24"], resolver=fake_resolver)
    assert by_net == ["203.0.113.7"]
    with pytest.raises(PolicyRefused):
        decide(
            Policy.on_prem, "mixed.example", 443, allowlist=["10.0.0.0/8"], resolver=fake_resolver
        )
    with pytest.raises(PolicyRefused, match="cannot be resolved"):
        decide(
            Policy.on_prem, "nowhere.invalid", 443, allowlist=["0.0.0.0/0"], resolver=fake_resolver
        )


def test_the_guarded_backend_connects_to_the_checked_address():
    class Inner(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self.tried: list[str] = []

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            self.tried.append(host)
            raise httpcore.ConnectError("refused")

    inner = Inner()
    PUBLIC_DNS["two.internal"] = ["10.0.0.7", "fd00::7"]
    try:
        backend = GuardedBackend(Policy.on_prem, resolver=fake_resolver, inner=inner)
        with pytest.raises(httpcore.ConnectError):
            backend.connect_tcp("two.internal", 8000)
        assert inner.tried == ["10.0.0.7", "fd00::7"]
        with pytest.raises(PolicyRefused):
            backend.connect_tcp("api.openai.com", 443)
        assert inner.tried == ["10.0.0.7", "fd00::7"]
    finally:
        del PUBLIC_DNS["two.internal"]


# --- (f) cloud_allowed, at the policy level only --------------------------------------------


def test_cloud_allowed_allows_a_public_host():
    addresses = decide(Policy.cloud_allowed, "api.openai.com", 443, resolver=fake_resolver)
    assert addresses == PUBLIC_DNS["api.openai.com"]
    with pytest.raises(ModelUnavailable, match="cannot be resolved"):
        decide(Policy.cloud_allowed, "nowhere.invalid", 443, resolver=fake_resolver)


# --- the audit over the API -----------------------------------------------------------------


def test_facilitators_read_the_model_calls_of_their_group(api: Api, settings, no_network):
    fac_id, fac_token = api.user("Faustine")
    gid = api.ok(
        "POST", "/groups", api.admin_token, json={"name": "Cercle", "facilitator_ids": [fac_id]}
    )["id"]
    sessions = api.client.app.state.companion.sessions
    with sessions() as db:
        group = db.get(Group, gid)
    gw = LLMGateway(
        settings.updated(**{"llm_base_url": "https://api.openai.com/v1"}),
        sessions,
        resolver=fake_resolver,
    )
    with pytest.raises(PolicyRefused):
        gw.complete(group, "clarity", PROMPT)

    [entry] = api.ok("GET", f"/groups/{gid}/model-calls", fac_token)
    assert entry["decision"] == "refused"
    assert entry["endpoint_host"] == "api.openai.com"
    assert entry["group_id"] == gid
    assert entry["policy"] == "on_prem"
    assert set(entry) == {
        "id",
        "at",
        "group_id",
        "purpose",
        "endpoint_host",
        "model",
        "policy",
        "decision",
        "outcome",
        "error",
        "prompt_tokens",
        "completion_tokens",
        "duration_ms",
    }
    assert len(api.ok("GET", f"/groups/{gid}/model-calls", api.admin_token)) == 1
