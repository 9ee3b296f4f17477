"""The stage contract: the artifact vocabulary, the start-up order check, input resolution,
and the one Timeline — down to a dropped recording whose chapters land at the same instant in
the MP3, the MP4, the JSON chapters and the captions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from mutagen.id3 import ID3

from pipeline import runner
from pipeline.artifacts import Artifact, Timeline
from pipeline.errors import PipelineError
from pipeline.models import Job
from pipeline.runner import Stage, StageOrderError, check_order
from pipeline.sidecar import EpisodeMetadata
from pipeline.workspace import Context
from tests.conftest import learncast

# --- Timeline ----------------------------------------------------------------------------

TIMELINE = Timeline(source_duration_s=60.0, kept=((2.0, 20.0), (25.0, 55.0)), intro_s=3.5)


@pytest.mark.parametrize(("recording", "deliverable"), [
    (0.0, 3.5), (2.0, 3.5), (10.0, 11.5), (22.0, 21.5), (25.0, 21.5), (30.0, 26.5),
    (55.0, 51.5), (59.0, 51.5)])
def test_recording_time_maps_to_deliverable_time(recording: float, deliverable: float) -> None:
    assert TIMELINE.to_deliverable(recording) == pytest.approx(deliverable)


def test_content_time_maps_back_and_cuts_are_listed() -> None:
    for t in (0.0, 5.0, 18.0, 30.0, 48.0):
        assert TIMELINE.to_content(TIMELINE.content_to_recording(t)) == pytest.approx(t)
    assert TIMELINE.content_duration_s == pytest.approx(48.0)
    assert TIMELINE.cut == [(0.0, 2.0), (20.0, 25.0), (55.0, 60.0)]
    assert Timeline.untrimmed(12.0).cut == []
    with pytest.raises(ValueError, match="frozen"):
        TIMELINE.intro_s = 0.0  # type: ignore[misc]


# --- the stage contract --------------------------------------------------------------------


def _noop(job: Job, ctx: Context) -> Job:
    return job


def test_the_pipeline_order_is_checked_at_start_up() -> None:
    check_order(runner.STAGES)  # what the runner does on import
    needs_master = Stage("early", _noop, needs=(Artifact.MASTER_AUDIO,))
    with pytest.raises(StageOrderError, match=r"'early' reads master_audio, but stage "
                                              r"'normalise' makes it later"):
        check_order((needs_master, *runner.STAGES))
    orphan = Stage("orphan", _noop, uses=(Artifact.ASR_VTT,))
    with pytest.raises(StageOrderError, match="no stage makes it"):
        check_order((*runner.STAGES, orphan))


def test_no_stage_imports_another_or_opens_the_state_database() -> None:
    stages = Path(runner.__file__).parent / "stages"
    for module in stages.glob("*.py"):
        text = module.read_text()
        assert "from pipeline.stages" not in text and "StateDB(" not in text, module.name
    outside = [p for p in Path(runner.__file__).parent.rglob("*.py")
               if "StateDB(" in p.read_text() and p.parent.name != "state"
               and p.name not in ("runner.py", "cli.py")]
    assert outside == []


def test_a_stage_gets_only_what_it_declared_and_may_make_only_that(ctx: Context,
                                                                   tone) -> None:
    wav = tone(ctx.workspace.work / "x" / "a.wav", seconds=1)
    job = Job(id="x", sha256="0" * 64, show="learning-weekly", title="X", slug="x",
              source="a.wav", original=ctx.workspace.rel(wav), probe=None,
              metadata=EpisodeMetadata(),
              files={"original": ctx.workspace.rel(wav), "source_audio": ctx.workspace.rel(wav)})
    seen: dict[str, object] = {}

    def peek(job: Job, ctx: Context) -> Job:
        seen.update(ctx.inputs)
        return job.with_file(Artifact.TRIMMED_AUDIO, job.files[Artifact.SOURCE_AUDIO])

    honest = Stage("peek", peek, needs=(Artifact.SOURCE_AUDIO,), makes=(Artifact.TRIMMED_AUDIO,))
    runner.call_stage(honest, job, ctx)
    assert set(seen) == {Artifact.SOURCE_AUDIO}
    with pytest.raises(StageOrderError, match="made trimmed_audio without declaring it"):
        runner.call_stage(Stage("sly", peek, needs=(Artifact.SOURCE_AUDIO,)), job, ctx)
    needs_master = Stage("late", _noop, needs=(Artifact.MASTER_AUDIO,))
    with pytest.raises(PipelineError, match=r"never made\. Run `learncast retry x --from "
                                            r"normalise`"):
        runner.call_stage(needs_master, job, ctx)


# --- one timeline, end to end ----------------------------------------------------------------

#: Speech clips, each starting a chapter, separated by pauses of room tone.
CLIPS = ("spk1_snt1.wav", "spk2_snt2.wav", "spk1_snt3.wav")
LEAD_IN_S, GAP_S = 2.0, 1.5


def _onset(samples: np.ndarray, rate: int, after: float = 0.0) -> float:
    """First 10 ms window after `after` s more than 25 dB above the quietest windows."""
    step = rate // 100
    frames = samples[: len(samples) // step * step].reshape(-1, step)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    floor = np.percentile(level, 5)
    start = int(after * 100)
    loud = np.nonzero(level[start:] > floor + 25)[0]
    assert len(loud), "no speech onset found"
    return (start + int(loud[0])) / 100


def _decode(ffmpeg: str, path: Path, rate: int = 16000) -> np.ndarray:
    out = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1",
                          "-ar", str(rate), "-f", "f32le", "-"], capture_output=True,
                         check=True).stdout
    return np.frombuffer(out, "<f4")


@pytest.mark.slow
def test_sidecar_chapters_land_at_the_same_instant_in_every_deliverable(
        workspace_dir: Path, shared_audio: Path, ffmpeg: str, tmp_path: Path) -> None:
    """A briefing with 2 s of room tone before the first word and a sidecar chapter at each
    speaker's first word: the published MP3 (ID3), MP4 and JSON chapters agree within 1 ms,
    each later chapter sits on its speech onset in the published audio (±50 ms), and the
    first caption of each chapter starts with it (±the recogniser's word timing)."""
    placed, t = [], LEAD_IN_S
    for name in CLIPS:
        clip = shared_audio / "speechbrain" / name
        placed.append((clip, t))
        t += len(_decode(ffmpeg, clip)) / 16000 + GAP_S
    inputs = [arg for clip, _ in placed for arg in ("-i", str(clip))]
    n = len(placed)
    graph = "".join(f"[{i}:a]aresample=48000,aformat=channel_layouts=mono,"
                    f"adelay=delays={round(1000 * at)}:all=1[a{i}];"
                    for i, (_, at) in enumerate(placed))
    graph += ("".join(f"[a{i}]" for i in range(n)) + f"amix=inputs={n}:normalize=0[s];"
              f"anoisesrc=color=pink:amplitude=0.002:sample_rate=48000:seed=3:d={t}[n];"
              "[s][n]amix=inputs=2:duration=longest:normalize=0[aout]")
    inbox = workspace_dir / "inbox"
    subprocess.run([ffmpeg, "-v", "error", "-y", *inputs, "-f", "lavfi", "-i",
                    f"testsrc2=size=320x180:rate=25:d={t}", "-filter_complex", graph,
                    "-map", f"{n}:v", "-map", "[aout]", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", str(t),
                    str(inbox / "briefing.mp4")], check=True)
    # the producer marks each chapter where its speaker starts, by ear: the onset in the file
    recording = _decode(ffmpeg, inbox / "briefing.mp4")
    starts = [round(_onset(recording, 16000, after=at), 2) for _, at in placed]
    chapters = "".join(f"  - {{start: {s}, title: Part {i + 1}}}\n" for i, s in enumerate(starts))
    (inbox / "briefing.yaml").write_text(f"title: Three voices\nchapters:\n{chapters}")
    config = workspace_dir / "config" / "learncast.toml"
    config.write_text(config.read_text().replace('review = "auto"', 'review = "immediate"'))

    run = learncast(workspace_dir, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    [ep] = json.loads(learncast(workspace_dir, "status", "--json").stdout)
    assert ep["status"] == "published"
    public = workspace_dir / "public"
    mp3, mp4 = (public / ep["objects"][k]["key"] for k in ("audio", "video"))
    assert ep["results"]["timeline"]["kept"][0][0] > 1.0  # the lead-in was really cut

    id3 = sorted((c.start_time / 1000, str(c.sub_frames["TIT2"]))
                 for c in ID3(mp3).getall("CHAP"))
    with av.open(str(mp4)) as c:
        in_mp4 = [(float(ch["start"] * ch["time_base"]), ch["metadata"]["title"])
                  for ch in c.chapters()]
    doc = json.loads((public / ep["objects"]["chapters"]["key"]).read_text())
    in_json = [(c["startTime"], c["title"]) for c in doc["chapters"]]
    titles = [f"Part {i + 1}" for i in range(len(CLIPS))]
    for found in (id3, in_mp4, in_json):
        assert [title for _, title in found] == titles
    for a, b, c in zip(id3, in_mp4, in_json, strict=True):
        assert abs(a[0] - b[0]) <= 0.001 and abs(a[0] - c[0]) <= 0.001

    assert id3[0][0] == 0.0  # the first word, 0.3 s in after trim, opens the first chapter
    published = _decode(ffmpeg, mp3)
    for start, _ in id3[1:]:
        assert _onset(published, 16000, after=max(start - 0.6, 0)) == pytest.approx(start,
                                                                                      abs=0.05)
    vtt = (public / ep["objects"]["vtt"]["key"]).read_text()
    cue_starts = [_seconds(line.split(" --> ")[0]) for line in vtt.splitlines() if "-->" in line]
    for start, _ in id3[1:]:
        first = min((s for s in cue_starts if s >= start - 0.5), default=None)
        assert first is not None and first == pytest.approx(start, abs=0.5)


def _seconds(stamp: str) -> float:
    h, m, s = stamp.strip().split(":") if stamp.count(":") == 2 else ("0", *stamp.split(":"))
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_status_lists_the_numbered_clips_as_lists() -> None:
    from pipeline.artifacts import grouped

    files = {Artifact.AUDIO: "a.mp3", Artifact.SOUNDBITE_2: "s2.mp3",
             Artifact.SOUNDBITE_1: "s1.mp3", Artifact.AUDIOGRAM: "a.mp4"}
    assert grouped(files) == {"audio": "a.mp3", "audiogram": "a.mp4",
                              "soundbites": ["s1.mp3", "s2.mp3"], "soundbite_videos": []}
