"""Hallucination guards and glossary correction."""

from __future__ import annotations

from pipeline.asr.guards import (
    GuardSettings,
    apply_glossary,
    drop_hallucinations,
    glossary_prompt,
    loop_words,
    repeating_tail,
)
from pipeline.asr.types import Segment, Transcript, Word


def _segment(text: str, start: float = 0.0, **figures: float) -> Segment:
    words = tuple(Word(t, start + i * 0.4, start + i * 0.4 + 0.3, 0.9)
                  for i, t in enumerate(text.split()))
    return Segment(start=start, end=start + len(words) * 0.4, text=text, words=words,
                   **figures)


def _transcript(*segments: Segment) -> Transcript:
    return Transcript(language="en", duration_s=60.0, segments=segments)


def test_drops_no_speech_boilerplate_and_loops_but_keeps_speech() -> None:
    speech = _segment("Welcome to the quarterly compliance briefing.", avg_logprob=-0.3)
    silence = _segment("you", 5, no_speech_prob=0.8, avg_logprob=-1.4)
    credits = _segment("Thank you for watching!", 10, avg_logprob=-0.5)
    subs = _segment("Subtitles by the Amara.org community", 15, avg_logprob=-0.5)
    loop = _segment("the the the the the the the the the the", 20, compression_ratio=1.8)
    squeezed = _segment("I'm going to go ahead and go ahead", 30, compression_ratio=2.9)
    kept, report = drop_hallucinations(
        _transcript(speech, silence, credits, subs, loop, squeezed), GuardSettings())
    assert [s.text for s in kept.segments] == [speech.text]
    reasons = [d["reason"] for d in report.dropped]
    assert reasons[0].startswith("no speech")
    assert reasons[1:3] == ["subtitle boilerplate", "subtitle boilerplate"]
    assert all(r.startswith("repetitive") for r in reasons[3:])


def test_confident_speech_with_some_no_speech_probability_is_kept() -> None:
    seg = _segment("Thanks to everyone who joined the pilot.", no_speech_prob=0.7,
                   avg_logprob=-0.2)
    kept, report = drop_hallucinations(_transcript(seg), GuardSettings())
    assert kept.segments == (seg,) and report.dropped == []


def test_glossary_respells_near_misses_and_counts_hits() -> None:
    transcript = _transcript(
        _segment("Open the comfyUI folder, then ask Kubernetes."),
        _segment("Our Kubernets cluster runs Work Day and workday tools.", 10),
    )
    fixed, result = apply_glossary(transcript, ["ComfyUI", "Kubernetes", "Workday"])
    text = fixed.text
    assert "ComfyUI folder," in text
    assert "Our Kubernetes cluster" in text
    assert "runs Workday and Workday tools." in text
    assert result.hits == {"ComfyUI": 1, "Kubernetes": 2, "Workday": 2}
    assert result.found == 3
    assert {(c["from"], c["to"]) for c in result.corrections} == {
        ("comfyUI", "ComfyUI"), ("Kubernets", "Kubernetes"), ("Work Day", "Workday"),
        ("workday", "Workday")}
    merged = next(w for w in fixed.words if w.text == "Workday")
    assert merged.end > merged.start  # "Work Day" became one word spanning both


def test_glossary_leaves_unrelated_and_short_words_alone() -> None:
    transcript = _transcript(_segment("The API is an app we use at work."))
    fixed, result = apply_glossary(transcript, ["APA", "Apex"])
    assert fixed.text == "The API is an app we use at work."
    assert result.found == 0 and result.corrections == []


def test_glossary_prompt_lists_terms_and_is_bounded() -> None:
    assert glossary_prompt([]) is None
    assert glossary_prompt(["ComfyUI", "Kubernetes"]) == "Glossary: ComfyUI, Kubernetes."
    long = glossary_prompt([f"Term{i:03d}" for i in range(200)])
    assert long is not None and len(long) <= 600 and long.endswith(".")


def test_real_closing_words_are_not_boilerplate() -> None:
    closing = _segment("Thanks for listening, and see you next week.", avg_logprob=-0.3)
    long = _segment("Thank you for watching this demo: next we open the reporting dashboard "
                    "and walk through every filter one by one.", avg_logprob=-0.3)
    kept, report = drop_hallucinations(_transcript(closing, long), GuardSettings())
    assert kept.segments == (closing, long) and report.dropped == []


def test_repeating_tail_finds_loops_not_speech() -> None:
    loop = loop_words("Thank you very much for your time. Thank you very much for your time. "
                      "Thank you very much for your time.")
    assert repeating_tail(loop) == 7
    assert repeating_tail(loop[:-1]) == 0  # two copies and a half: not yet
    jfk = loop_words("And so my fellow Americans, ask not what your country can do for you, "
                     "ask what you can do for your country.")
    assert repeating_tail(jfk) == 0
    assert repeating_tail(loop_words("no, no, no")) == 0  # short blocks need five copies
    assert repeating_tail(loop_words("no no no no no")) == 1
    assert repeating_tail([7, 8, 9, 7, 8, 9, 7, 8, 9]) == 3  # token ids work the same


def test_a_third_identical_segment_in_a_row_is_a_loop() -> None:
    first = _segment("Thank you very much.", 0, avg_logprob=-0.3)
    segs = [first, _segment("Thank you very much.", 2, avg_logprob=-0.3),
            _segment("thank you, very much", 4, avg_logprob=-0.3),
            _segment("Goodbye.", 6, avg_logprob=-0.3)]
    kept, report = drop_hallucinations(_transcript(*segs), GuardSettings())
    assert [s.start for s in kept.segments] == [0, 2, 6]
    assert report.dropped[0]["reason"].startswith("repetition loop")
