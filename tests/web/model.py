"""Answers of the model double (tests/doubles/openai_double.py) for browser sessions, chosen by
the answer's JSON schema, so whichever feature calls the model first gets a fitting answer.

This is a TEST DOUBLE: its answers are fixed sentences, fitted only to the schema's shape.
"""

from __future__ import annotations

import json
from typing import Any

from tests.doubles.openai_double import Reply

CONTRACT = [
    "Comment puis-je confier le reporting à mon équipe sans perdre le fil ?",
    "Comment puis-je déléguer le reporting hebdomadaire à mon équipe ?",
    "Comment pourrais-je alléger mes soirées en déléguant le reporting ?",
]


def _schema(body: dict[str, Any]) -> dict[str, Any]:
    fmt = body.get("response_format") or {}
    return dict((fmt.get("json_schema") or {}).get("schema") or {})


def _synthesis(schema: dict[str, Any]) -> str:
    defs = schema.get("$defs", {})
    themes = defs.get("ModelLabel", {}).get("properties", {}).get("theme", {}).get("enum", [])
    refs = defs.get("ModelAction", {}).get("properties", {}).get("ideas", {})
    known = refs.get("items", {}).get("enum", ["I1"])
    answer: dict[str, Any] = {
        "labels": [{"theme": n, "label": f"Piste {n}"} for n in themes],
        "actions": [
            {
                "objective": "Déléguer le reporting hebdomadaire",
                "first_step": "En parler à Zoé lundi",
                "resources": "Une heure avec l'équipe",
                "indicator": "Deux soirées libres par semaine",
                "weeks": 3,
                "ideas": known[:1],
            },
            {
                "objective": "Choisir un tableau partagé",
                "first_step": "Comparer deux outils",
                "resources": "Le budget de l'équipe",
                "indicator": "Un tableau utilisé par tous",
                "weeks": 4,
                "ideas": known[1:2] or known[:1],
            },
        ],
    }
    if "questions" in schema.get("properties", {}):
        answer["questions"] = [{"text": "Qu'est-ce qui me retient de lâcher ?", "ideas": known[:1]}]
    return json.dumps(answer, ensure_ascii=False)


def respond(body: dict[str, Any]) -> Reply | None:
    schema = _schema(body)
    properties = schema.get("properties", {})
    if "candidates" in properties:
        count = properties["candidates"].get("maxItems", 3)
        return Reply(json.dumps({"candidates": CONTRACT[:count]}, ensure_ascii=False))
    if "actions" in properties:
        return Reply(_synthesis(schema), chunk_delay_s=0.02)  # the page shows progress
    return None  # clarity reviews, regulation points: "ok", which their checks refuse
