"""The review page's plots: the reading-speed legend never hides the cues it warns about."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox

from pipeline.review import plots
from pipeline.review.cues import Cue

LIMIT = 17.0


def _cues() -> list[Cue]:
    """A minute of cues; the fast ones sit at the top right, where a legend used to go."""
    out = []
    for k in range(30):
        fast = k in (3, 26, 27, 28, 29)
        text = ("This line is read far too quickly for anyone" if fast else "A calm line")
        out.append(Cue(k * 2.0, k * 2.0 + 1.5, (text,)))
    return out


def test_the_reading_speed_legend_stays_off_the_warned_cues() -> None:
    cues = _cues()
    fig = plots.reading_speed_figure(cues, LIMIT)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    [ax] = fig.axes
    legend = ax.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["cue", "over the limit (5)", "limit 17 characters/s"]
    box = legend.get_window_extent(renderer)
    plot_area = ax.get_window_extent(renderer)
    assert not box.overlaps(plot_area), f"legend {box} lies on the plot area {plot_area}"
    # every warned cue is drawn inside the plot area, and none under the legend
    [marked] = [line for line in ax.get_lines() if line.get_label().startswith("over")]
    points = ax.transData.transform(marked.get_xydata())
    assert len(points) == 5
    for x, y in points:
        assert plot_area.contains(x, y) and not box.contains(x, y)
        assert not Bbox.from_bounds(x - 4, y - 4, 8, 8).overlaps(box)
    svg = plots._svg(fig)
    assert "over the limit (5)" in svg and svg.startswith("<?xml")


def test_without_a_limit_the_plot_has_no_warning_marks() -> None:
    fig = plots.reading_speed_figure(_cues(), None)
    [ax] = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cue"]
