// Progressive enhancement only: every action on the page also works without script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("player-box");
  if (box && window.ResizeObserver) {
    // The sticky player's height, so anchors and focused fields land below it (review.css).
    new ResizeObserver(() => {
      document.documentElement.style.setProperty("--player-h", `${box.offsetHeight}px`);
    }).observe(box);
  }
  const player = document.getElementById("player");
  if (!player) return;
  const cues = Array.from(document.querySelectorAll("li.cue"));
  const now = document.getElementById("now-caption");
  const status = document.getElementById("shortcut-status");
  const play = () => {
    const started = player.play();
    if (started) started.catch((err) => { if (status) status.textContent = `Could not play: ${err.message}`; });
  };
  // A hair past the start, so the cue is active even with millisecond rounding.
  const seek = (start) => { player.currentTime = start + 0.01; };
  for (const button of document.querySelectorAll("button.seek")) {
    button.addEventListener("click", () => {
      seek(parseFloat(button.dataset.start));
      play();  // a reviewer who picks a cue wants to hear it
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

  // Keyboard shortcuts. Letter keys can be turned off (WCAG 2.1.4) and never act while the
  // reviewer types in a field; Ctrl/Cmd+S saves from anywhere, the text field included.
  const help = document.getElementById("shortcuts");
  const toggle = document.getElementById("shortcuts-on");
  if (help) help.hidden = false;
  if (toggle) {
    toggle.checked = localStorage.getItem("learncast.shortcuts") !== "off";
    toggle.addEventListener("change", () => {
      localStorage.setItem("learncast.shortcuts", toggle.checked ? "on" : "off");
    });
  }
  const NOT_TYPING = ["checkbox", "radio", "button", "submit", "reset", "range", "file", "color"];
  const typing = (el) => el instanceof HTMLElement && (el.isContentEditable
    || el.tagName === "TEXTAREA" || el.tagName === "SELECT"
    || (el.tagName === "INPUT" && !NOT_TYPING.includes(el.type)));
  // The cue the player is in, else the last one that started before the player's time.
  const currentCue = () => {
    const t = player.currentTime + 0.02;
    let found = -1;
    cues.forEach((li, k) => { if (parseFloat(li.dataset.start) <= t) found = k; });
    return found;
  };
  const goTo = (k) => {
    if (k < 0 || k >= cues.length) return;
    seek(parseFloat(cues[k].dataset.start));  // keeps playing if it was playing
    const button = cues[k].querySelector("button.seek");
    if (button) button.focus();
  };
  const saveTarget = () => {
    const focused = document.activeElement && document.activeElement.closest("form[data-save]");
    if (focused) return focused;
    const open = document.querySelectorAll("details.edit[open] form[data-save]");
    return open.length === 1 ? open[0] : null;
  };
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented) return;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "s") {
      event.preventDefault();
      const form = saveTarget();
      if (form) form.requestSubmit();
      else if (status) status.textContent = "Nothing to save: open a cue's “Edit” form first.";
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (toggle && !toggle.checked) return;
    if (event.key === "k") {
      if (player.paused) play(); else player.pause();
    } else if (event.key === "j") {
      goTo(currentCue() - 1);
    } else if (event.key === "l") {
      goTo(currentCue() + 1);
    } else if (event.key === "?" && help) {
      help.open = !help.open;
    } else {
      return;
    }
    event.preventDefault();
  });
});
