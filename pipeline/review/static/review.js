// Progressive enhancement only: every action on the page also works without script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const player = document.getElementById("player");
  if (!player) return;
  const cues = Array.from(document.querySelectorAll("li.cue"));
  const now = document.getElementById("now-caption");
  for (const button of document.querySelectorAll("button.seek")) {
    button.addEventListener("click", () => {
      // A hair past the start, so the cue is active even with millisecond rounding.
      player.currentTime = parseFloat(button.dataset.start) + 0.01;
    });
  }
  const track = player.textTracks && player.textTracks[0];
  if (track) {
    track.mode = "showing";
    track.addEventListener("cuechange", () => {
      if (now) {
        now.textContent = Array.from(track.activeCues || []).map((c) => (c.getCueAsHTML ? c.getCueAsHTML().textContent : c.text)).join(" ");
      }
    });
  }
  player.addEventListener("timeupdate", () => {
    const t = player.currentTime;
    for (const li of cues) {
      const on = t >= parseFloat(li.dataset.start) && t < parseFloat(li.dataset.end);
      if (on) li.setAttribute("aria-current", "true");
      else li.removeAttribute("aria-current");
    }
  });
});
