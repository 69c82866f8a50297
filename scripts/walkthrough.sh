#!/usr/bin/env bash
# A text-only co-development session over the HTTP API, end to end, with curl.
# Usage: scripts/walkthrough.sh [BASE_URL] [DATA_DIR]   (the service must be running)
set -euo pipefail
BASE=${1:-http://127.0.0.1:8000}/api/v1
DATA_DIR=${2:-./data}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
call() { # call METHOD PATH TOKEN [JSON]
    curl -sS --fail-with-body -X "$1" "$BASE$2" -H "Authorization: Bearer $3" \
        -H 'Content-Type: application/json' ${4:+-d "$4"}
}

# 1. The first administrator comes from the CLI; its token is printed once.
ADMIN=$(companion users create-admin --name "Anne Admin" --data-dir "$DATA_DIR" | awk '/^token:/ {print $2}')

# 2. Accounts: a facilitator and four members (each gets a token once).
new_user() { call POST /users "$ADMIN" "{\"name\": \"$1\"}"; }
FAC_JSON=$(new_user "Faustine"); FAC_ID=$(echo "$FAC_JSON" | json "['id']"); FAC=$(echo "$FAC_JSON" | json "['token']")
declare -a IDS TOKENS
for name in "Bérénice" "Anatole" "Zoé" "Kwame"; do
    J=$(new_user "$name"); IDS+=("$(echo "$J" | json "['id']")"); TOKENS+=("$(echo "$J" | json "['token']")")
done
CLIENT=${TOKENS[0]}; CONSULTANT=${TOKENS[1]}

# 3. A French-speaking group, its members, a cycle and a session with Bérénice as client.
G=$(call POST /groups "$ADMIN" "{\"name\": \"Cercle des cadres\", \"language\": \"fr\", \"facilitator_ids\": [\"$FAC_ID\"]}" | json "['id']")
for id in "${IDS[@]}"; do call POST "/groups/$G/members" "$FAC" "{\"user_id\": \"$id\"}" >/dev/null; done
call POST "/groups/$G/cycles" "$FAC" >/dev/null
S=$(call POST "/groups/$G/sessions" "$FAC" "{\"client_id\": \"${IDS[0]}\"}" | json "['id']")
P="/groups/$G/sessions/$S"

# 4. The six phases, in order, with typed notes, the contract, the action plan and learnings.
phase() { call POST "$P/phases/$1/$2" "$FAC" >/dev/null; }
phase presentation start
call POST "$P/notes" "$CLIENT" '{"body": "Mon équipe attend tout de moi ; je n’arrive plus à déléguer."}' >/dev/null
phase presentation end
phase clarification start
call POST "$P/notes" "$CONSULTANT" '{"body": "Qu’as-tu déjà essayé pour déléguer ?"}' >/dev/null
phase clarification end
phase contract start
call PUT "$P/contract" "$CLIENT" '{"text": "Comment puis-je confier le reporting mensuel à mon équipe d’ici l’été ?"}' >/dev/null
phase contract end
phase consultation start
call POST "$P/notes" "$CONSULTANT" '{"body": "Commence par une tâche à faible risque et fixe un point hebdomadaire."}' >/dev/null
phase consultation end
phase synthesis start
call POST "$P/action-plan/actions" "$CLIENT" '{"objective": "Confier le reporting", "first_step": "En parler lundi en réunion", "indicator": "Le rapport de juin est fait par l’équipe", "due_date": "2030-06-30"}' >/dev/null
phase synthesis end
phase learning start
call PUT "$P/learnings" "$CONSULTANT" '{"text": "Je garde l’idée du point hebdomadaire.", "rating": 5}' >/dev/null
phase learning end

call GET "$P" "$CLIENT" | json "['status']"
call GET "$P/contract" "$CONSULTANT" | json "['text']"
call GET "$P/action-plan" "$CLIENT" | json "['actions'][0]['objective']"
