// What the live page and the Timelapses page both say about a recording.
"use strict";

window.applianceTimelapse = {
  bytes(n) {
    if (n < 1024 * 1024) return `${Math.max(1, Math.round(n / 1024))} KB`;
    if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
    return `${(n / 1024 ** 3).toFixed(2)} GB`;
  },
  // "recording, 57 frames" and the like: the live page shows the same line.
  line(t) {
    if (t.state === "recording") return t.paused ? `recording paused: ${t.paused}` : `recording, ${t.frames} frame${t.frames === 1 ? "" : "s"}`;
    if (t.state === "rendering") return `rendering ${Math.round((t.progress || 0) * 100)}%`;
    if (t.state === "failed") return `failed: ${t.error || "unknown error"}`;
    return "ready";
  },
};
