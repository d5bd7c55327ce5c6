// The Timelapses page: every recording (GET /api/timelapses), kept up to date by timelapse2v.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const api = window.applianceApi;
  let items = new Map();

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props);
    for (const child of children) node.append(child);
    return node;
  }

  function say(text, bad = false) {
    const box = $("message");
    box.textContent = text;
    box.hidden = !text;
    box.classList.toggle("error", bad);
  }

  const { bytes, line } = window.applianceTimelapse;

  function length(seconds) {
    if (seconds === null) return "–";
    const s = Math.round(seconds);
    return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
  }

  function play(t) {
    const card = $("player-card");
    const video = $("player");
    $("player-title").textContent = t.job || `Timelapse ${t.id}`;
    video.poster = `/api/timelapses/${t.id}/poster`;
    video.src = `/api/timelapses/${t.id}/video`;
    video.dataset.id = String(t.id);
    card.hidden = false;
    card.scrollIntoView({ block: "nearest" });
    video.play().catch(() => { /* the user presses play on the controls */ });
  }

  async function act(action, done) {
    try {
      say("");
      await action();
      if (done) say(done);
    } catch (err) {
      say(err.message, true);
    }
  }

  function render() {
    const list = $("timelapses");
    list.replaceChildren();
    const sorted = [...items.values()].sort((a, b) => b.id - a.id);
    for (const t of sorted) {
      const ready = t.state === "ready";
      const poster = ready
        ? el("img", { src: `/api/timelapses/${t.id}/poster`, alt: `Last frame of ${t.job || "timelapse " + t.id}`, loading: "lazy" })
        : el("div", { className: "poster-empty", textContent: t.state === "recording" ? "●" : "…" });
      const facts = el("dl", { className: "facts" },
        el("div", {}, el("dt", { textContent: "Started" }), el("dd", { textContent: new Date(t.startedAt).toLocaleString() })),
        el("div", {}, el("dt", { textContent: "Length" }), el("dd", { textContent: length(t.durationS) })),
        el("div", {}, el("dt", { textContent: "Frames" }), el("dd", { textContent: String(t.frames) })),
        el("div", {}, el("dt", { textContent: "Size" }), el("dd", { textContent: bytes(t.sizeBytes) })));
      const actions = el("div", { className: "inline" });
      if (ready) {
        const playButton = el("button", { type: "button", textContent: "Play" });
        playButton.addEventListener("click", () => play(t));
        const download = el("a", { href: `/api/timelapses/${t.id}/video`, textContent: "Download", className: "button secondary" });
        download.download = `timelapse-${t.id}.mp4`;
        actions.append(playButton, download);
      }
      if (t.state === "recording") {
        const stop = el("button", { type: "button", className: "secondary", textContent: "Stop recording" });
        stop.addEventListener("click", () => act(() => api("POST", `/api/timelapses/${t.id}/stop`)));
        actions.append(stop);
      }
      if (ready || t.state === "failed") {
        const remove = el("button", { type: "button", className: "primary", textContent: "Delete" });
        remove.addEventListener("click", () => {
          if (window.confirm(`Delete ${t.job || "timelapse " + t.id}? The video is gone for good.`)) {
            act(() => api("DELETE", `/api/timelapses/${t.id}`), "Deleted.");
          }
        });
        actions.append(remove);
      }
      const item = el("li", { className: "card timelapse" }, poster,
        el("div", { className: "about" },
          el("h2", { textContent: t.job || `Timelapse ${t.id}` }),
          el("p", { className: `state ${t.state}`, textContent: line(t) }),
          facts, actions));
      item.dataset.id = String(t.id);
      item.dataset.state = t.state;
      list.append(item);
    }
    $("timelapses-empty").hidden = items.size > 0;
  }

  async function loadSpace() {
    const status = (await api("GET", "/status")).timelapse;
    $("space").textContent = `Timelapses use ${bytes(status.usedBytes)} of ${bytes(status.maxBytes)} ` +
      `(timelapse_max_bytes); ${bytes(status.freeBytes)} free on the data partition, ` +
      `${bytes(status.minFreeBytes)} always kept free.`;
    $("space-problem").textContent = status.paused ? `Recording is paused: ${status.paused}` : "";
    $("space-problem").hidden = !status.paused;
  }

  async function load() {
    items = new Map((await api("GET", "/api/timelapses")).map((t) => [t.id, t]));
    render();
  }

  const socket = io({ withCredentials: true });
  const connection = (online, text) => {
    $("connection").textContent = text;
    $("connection").classList.toggle("online", online);
    $("connection").classList.toggle("offline", !online);
  };
  socket.on("connect", () => { connection(true, "Live"); load().catch((err) => say(err.message, true)); });
  socket.on("disconnect", () => connection(false, "Disconnected, reconnecting…"));
  socket.on("timelapse2v", (t) => {
    if (t.removed) items.delete(t.id);
    else items.set(t.id, t);
    render();
    loadSpace().catch(() => {});
  });

  $("start-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const job = $("start-job").value.trim();
    act(() => api("POST", "/api/timelapses", job ? { job } : {}), "Recording.");
  });
  loadSpace().catch((err) => say(err.message, true));
})();
