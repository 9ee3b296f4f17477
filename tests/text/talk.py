"""Synthetic transcripts for the text tests: sentences said at a steady pace, word by word."""

from __future__ import annotations

from pipeline.asr.types import Word

WORD_S, GAP_S, PAUSE_S = 0.32, 0.06, 0.7


def say(sentences: list[str], *, start: float = 0.0, pauses: dict[int, float] | None = None
        ) -> list[Word]:
    """Words with times: each sentence after a pause (`pauses[i]` overrides before sentence i)."""
    words: list[Word] = []
    t = start
    for i, sentence in enumerate(sentences):
        if i:
            t += (pauses or {}).get(i, PAUSE_S)
        for token in sentence.split():
            words.append(Word(token, round(t, 3), round(t + WORD_S, 3), 0.9))
            t += WORD_S + GAP_S
    return words


KUBERNETES = [
    "Kubernetes runs your containers on a cluster of machines.",
    "Every container in Kubernetes lives inside a pod.",
    "A pod can hold one container or several containers.",
    "The cluster schedules each pod onto a node with room.",
    "When a node fails, Kubernetes moves the pod to another node.",
    "Deployments tell the cluster how many pods to keep running.",
    "A deployment rolls out new container images pod by pod.",
    "If the rollout breaks, the deployment rolls back the pods.",
    "Services give pods in the cluster one stable address.",
    "So the cluster, the pods and the deployments work together.",
]
FEEDBACK = [
    "Now let us talk about feedback between a manager and the team.",
    "Good feedback names the situation and the behaviour you saw.",
    "Then the manager explains the impact of that behaviour on the team.",
    "Feedback lands when it comes soon after the situation.",
    "Ask the team member how they saw the situation before judging.",
    "A manager who gives feedback weekly builds trust with the team.",
    "Praise is feedback too, so name the behaviour you want repeated.",
    "Write down the feedback so the next conversation can follow up.",
    "Feedback habits take practice for every manager on the team.",
    "That is the whole feedback model for managers and teams.",
]
BUDGET = [
    "Finally, the quarterly budget review is due next month.",
    "Each department submits its budget spreadsheet to finance.",
    "Finance compares the budget with last quarter's spending.",
    "Travel spending ran over budget in two departments.",
    "The budget review meeting decides which spending to cut.",
    "Send your budget questions to the finance team by Friday.",
    "Late budget spreadsheets delay the whole quarterly review.",
    "Finance publishes the approved budget after the review.",
]
