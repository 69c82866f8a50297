"""The six phases of a co-development session (Payette & Champagne), in order."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Language(StrEnum):
    fr = "fr"
    en = "en"


class Phase(StrEnum):
    presentation = "presentation"
    clarification = "clarification"
    contract = "contract"
    consultation = "consultation"
    synthesis = "synthesis"
    learning = "learning"

    @property
    def number(self) -> int:
        return PHASES.index(self) + 1

    @property
    def info(self) -> PhaseInfo:
        return PHASE_INFO[self]


PHASES: tuple[Phase, ...] = tuple(Phase)


@dataclass(frozen=True)
class PhaseInfo:
    title: dict[Language, str]
    default_minutes: int
    reminder: dict[Language, str]


# Default timeboxes are the upper bound of DESIGN.md §1's typical times; groups override them.
PHASE_INFO: dict[Phase, PhaseInfo] = {
    Phase.presentation: PhaseInfo(
        title={Language.fr: "Exposé", Language.en: "Presentation"},
        default_minutes=15,
        reminder={
            Language.fr: "Le client expose son projet, sa préoccupation ou son problème ; "
            "les consultants écoutent sans interrompre.",
            Language.en: "The client presents the project, concern or problem; "
            "consultants listen without interrupting.",
        },
    ),
    Phase.clarification: PhaseInfo(
        title={Language.fr: "Clarification", Language.en: "Clarifying questions"},
        default_minutes=20,
        reminder={
            Language.fr: "Les consultants posent des questions d'information, ouvertes ; "
            "pas de conseil déguisé (« Avez-vous pensé à… ? ») ni de jugement.",
            Language.en: "Consultants ask open information questions; no disguised advice "
            '("Have you tried…?") and no judgment.',
        },
    ),
    Phase.contract: PhaseInfo(
        title={Language.fr: "Contrat", Language.en: "Contract"},
        default_minutes=10,
        reminder={
            Language.fr: "Les consultants disent ce qu'ils ont compris ; le client formule "
            "sa demande au groupe en une seule phrase.",
            Language.en: "Consultants say what they understood; the client states the "
            "request to the group in one sentence.",
        },
    ),
    Phase.consultation: PhaseInfo(
        title={Language.fr: "Consultation", Language.en: "Consultation"},
        default_minutes=30,
        reminder={
            Language.fr: "Les consultants partagent idées, ressentis, expériences et "
            "suggestions ; le client écoute, prend des notes et ne répond pas.",
            Language.en: "Consultants share ideas, feelings, experiences and suggestions; "
            "the client listens, takes notes and does not answer.",
        },
    ),
    Phase.synthesis: PhaseInfo(
        title={
            Language.fr: "Synthèse et plan d'action",
            Language.en: "Synthesis and action plan",
        },
        default_minutes=15,
        reminder={
            Language.fr: "Le client dit ce qu'il retient et bâtit son plan d'action ; "
            "les consultants l'aident à le préciser. Le client décide.",
            Language.en: "The client says what they keep and builds an action plan; "
            "consultants help make it precise. The client decides.",
        },
    ),
    Phase.learning: PhaseInfo(
        title={
            Language.fr: "Apprentissage et régulation",
            Language.en: "Learning and regulation",
        },
        default_minutes=15,
        reminder={
            Language.fr: "Chacun dit ce qu'il a appris et comment il se sent ; "
            "le groupe évalue la séance et le respect du cadre.",
            Language.en: "Everyone says what they learned and how they feel; "
            "the group evaluates the session and how the frame was kept.",
        },
    ),
}


def default_timeboxes() -> dict[Phase, int]:
    """Minutes per phase when a group sets none."""
    return {phase: PHASE_INFO[phase].default_minutes for phase in PHASES}
