// The live page: frames, readings, status and beacons pushed over Socket.IO.
// No inline scripts (the Content-Security-Policy forbids them); all text goes in via textContent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let users = [];
  let devices = new Map();
  let chartDay = new Date().toISOString().slice(0, 10);
  let chartPoints = [];
  let frameUrl = null;

  // -- helpers -------------------------------------------------------------------------------------
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props);
    for (const child of children) node.append(child);
    return node;
  }

  function localTime(iso) {
    return iso ? new Date(iso).toLocaleTimeString() : "–";
  }

  const api = window.applianceApi;

  function showError(message) {
    const box = $("presence-error");
    box.textContent = message;
    box.hidden = !message;
  }

  // -- connection ----------------------------------------------------------------------------------
  function setConnection(online, text) {
    const box = $("connection");
    box.textContent = text;
    box.classList.toggle("online", online);
    box.classList.toggle("offline", !online);
  }

  const socket = io({ withCredentials: true });
  socket.on("connect", () => {
    setConnection(true, "Live");
    tellSocketHowFramesCome();
  });
  socket.on("disconnect", () => setConnection(false, "Disconnected, reconnecting…"));
  socket.on("connect_error", (err) => {
    if (err && err.data && err.data.error === "unauthorized") window.location.assign("/login?next=/");
    setConnection(false, "Cannot reach the appliance, retrying…");
  });

  // -- frames: one binary message each over /frames, Socket.IO's image2v while /frames is down ---
  function showFrame(bytes, mime, timestamp) {
    const img = $("frame");
    const url = URL.createObjectURL(new Blob([bytes], { type: mime }));
    const previous = frameUrl;
    frameUrl = url;
    img.onload = () => { if (previous) URL.revokeObjectURL(previous); };
    img.src = url;
    img.hidden = false;
    img.dataset.timestamp = timestamp;
    $("frame-empty").hidden = true;
    $("frame-time").textContent = localTime(timestamp);
    $("frame-time").dateTime = timestamp;
  }
  socket.on("image2v", (data) => showFrame(data.image, data.mime, data.timestamp));

  let framesOpen = false;
  function tellSocketHowFramesCome() {
    if (socket.connected) socket.emit("frames", { image2v: !framesOpen });
  }
  // A /frames message: 2 bytes (big-endian) n, n bytes of JSON {mime, timestamp}, the image.
  function openFrames(retryMs) {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const wire = new WebSocket(`${scheme}://${window.location.host}/frames`);
    wire.binaryType = "arraybuffer";
    wire.onopen = () => {
      framesOpen = true;
      retryMs = 1000;
      tellSocketHowFramesCome();
    };
    wire.onmessage = (event) => {
      const bytes = new Uint8Array(event.data);
      const n = (bytes[0] << 8) | bytes[1];
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(2, 2 + n)));
      showFrame(bytes.subarray(2 + n), header.mime, header.timestamp);
    };
    wire.onclose = () => {
      if (framesOpen) {
        framesOpen = false;
        tellSocketHowFramesCome();
      }
      window.setTimeout(() => openFrames(Math.min(retryMs * 2, 30000)), retryMs);
    };
  }
  openFrames(1000);

  // -- the Bambu printer (GET /api/printer's body, pushed as printer2v) -----------------------------
  let printerLight = null;
  const temp = (now, target) => (now === null ? "–" : `${now.toFixed(0)} °C` + (target ? ` → ${target.toFixed(0)} °C` : ""));
  socket.on("printer2v", (p) => {
    $("printer-card").hidden = false;
    const line = [p.state || "UNKNOWN"];
    if (p.progress !== null && ["PREPARE", "RUNNING", "PAUSE"].includes(p.state)) line.push(`${p.progress}%`);
    if (!p.connected) line.push("(not connected)");
    $("printer-line").textContent = line.join(" ");
    $("printer-card").dataset.state = p.state || "";
    $("printer-progress").value = p.progress || 0;
    $("printer-job").textContent = p.job || "–";
    $("printer-layer").textContent = p.totalLayers ? `${p.layer ?? 0} / ${p.totalLayers}` : "–";
    $("printer-remaining").textContent = p.remainingMin === null ? "–" : `${p.remainingMin} min`;
    $("printer-nozzle").textContent = temp(p.nozzleTemp, p.nozzleTarget);
    $("printer-bed").textContent = temp(p.bedTemp, p.bedTarget);
    printerLight = p.lightOn;
    $("printer-light").textContent = p.lightOn ? "Switch off" : "Switch on";
    $("printer-light").setAttribute("aria-pressed", String(Boolean(p.lightOn)));
    $("printer-error").textContent = p.lastError || "";
    $("printer-error").hidden = !p.lastError;
    $("printer-seen").textContent = localTime(p.lastSeen);
  });
  $("printer-light").addEventListener("click", () => {
    api("POST", "/api/printer/light", { on: !printerLight }).catch((err) => {
      $("printer-error").textContent = err.message;
      $("printer-error").hidden = false;
    });
  });

  // -- the timelapse being recorded or rendered ("recording, 57 frames") -------------------------
  const timelapses = new Map();
  function showTimelapse() {
    const current = [...timelapses.values()].filter((t) => t.state === "recording" || t.state === "rendering")
      .sort((a, b) => b.id - a.id)[0];
    $("timelapse-line").hidden = !current;
    $("timelapse-line").classList.toggle("paused", Boolean(current && current.paused));
    if (current) $("timelapse-link").textContent = `Timelapse: ${window.applianceTimelapse.line(current)}`;
  }
  socket.on("timelapse2v", (t) => {
    if (t.removed) timelapses.delete(t.id);
    else timelapses.set(t.id, t);
    showTimelapse();
  });
  api("GET", "/api/timelapses").then((list) => {
    for (const t of list) if (!timelapses.has(t.id)) timelapses.set(t.id, t);
    showTimelapse();
  }).catch((err) => showError(err.message));

  // -- readings and status -------------------------------------------------------------------------
  socket.on("temphum2v", (data) => {
    $("temperature").textContent = data.temperature.toFixed(1);
    $("humidity").textContent = data.humidity.toFixed(1);
    $("reading-time").textContent = localTime(data.timestamp);
    if (data.timestamp.slice(0, 10) === chartDay) {
      chartPoints.push(data);
      drawChart();
    }
  });
  socket.on("status2v", (data) => { $("status").textContent = data.status; });

  async function loadChart(day) {
    chartDay = day;
    chartPoints = await api("GET", `/api/temphum?date=${encodeURIComponent(day)}`);
    drawChart();
  }

  function drawChart() {
    const svg = $("chart");
    svg.replaceChildren();
    const width = 600, height = 240, left = 40, right = 40, top = 10, bottom = 30;
    const dayStart = Date.parse(`${chartDay}T00:00:00Z`);
    const x = (iso) => left + ((Date.parse(iso) - dayStart) / 86400000) * (width - left - right);
    const temps = chartPoints.map((p) => p.temperature);
    const tMin = Math.floor(Math.min(...temps, 15)), tMax = Math.ceil(Math.max(...temps, 30));
    const yT = (t) => top + (1 - (t - tMin) / (tMax - tMin || 1)) * (height - top - bottom);
    const yH = (h) => top + (1 - h / 100) * (height - top - bottom);
    const line = (x1, y1, x2, y2, cls) => {
      const l = document.createElementNS(SVG, "line");
      Object.entries({ x1, y1, x2, y2 }).forEach(([k, v]) => l.setAttribute(k, v));
      l.setAttribute("class", cls);
      svg.append(l);
    };
    const text = (value, tx, ty, anchor) => {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", tx); t.setAttribute("y", ty); t.setAttribute("text-anchor", anchor);
      t.textContent = value;
      svg.append(t);
    };
    line(left, height - bottom, width - right, height - bottom, "axis");
    line(left, top, left, height - bottom, "axis");
    line(width - right, top, width - right, height - bottom, "axis");
    for (const hour of [0, 6, 12, 18, 24]) {
      text(`${String(hour).padStart(2, "0")}:00`, left + (hour / 24) * (width - left - right), height - 8, "middle");
    }
    text(`${tMax}°`, left - 4, top + 10, "end");
    text(`${tMin}°`, left - 4, height - bottom, "end");
    text("100%", width - right + 4, top + 10, "start");
    text("0%", width - right + 4, height - bottom, "start");
    if (!chartPoints.length) {
      text("No readings on this day", width / 2, height / 2, "middle");
      return;
    }
    for (const [key, y, cls] of [["temperature", yT, "temp"], ["humidity", yH, "hum"]]) {
      const path = document.createElementNS(SVG, "polyline");
      path.setAttribute("points", chartPoints.map((p) => `${x(p.timestamp).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" "));
      path.setAttribute("class", `series ${cls}`);
      svg.append(path);
      if (chartPoints.length <= 300) {  // dots, so a few readings close together stay visible
        for (const p of chartPoints) {
          const dot = document.createElementNS(SVG, "circle");
          dot.setAttribute("cx", x(p.timestamp).toFixed(1));
          dot.setAttribute("cy", y(p[key]).toFixed(1));
          dot.setAttribute("r", "2.5");
          dot.setAttribute("class", `dot ${cls}`);
          svg.append(dot);
        }
      }
    }
    svg.dataset.points = String(chartPoints.length);
  }

  $("chart-date").value = chartDay;
  $("chart-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadChart($("chart-date").value).catch((err) => showError(err.message));
  });

  // -- beacons -------------------------------------------------------------------------------------
  const STATE_TEXT = {
    discovered: "In range, not paired",
    connected: "Connected",
    away: "Away (reconnects by itself)",
    requiresTap: "Away too long: tap Reconnect",
  };

  async function act(path, body) {
    try {
      showError("");
      await api("POST", path, body);
    } catch (err) {
      showError(err.message);
    }
  }

  function actions(device) {
    const cell = el("td", { className: "actions" });
    if (!device.isPaired) {
      const select = el("select");
      select.setAttribute("aria-label", `User to pair ${device.name} with`);
      for (const user of users) select.append(el("option", { value: String(user.id), textContent: user.username }));
      const pair = el("button", { type: "button", textContent: "Pair" });
      pair.addEventListener("click", () => {
        const user = users.find((u) => String(u.id) === select.value);
        if (user) act("/pair", { deviceId: device.id, userId: String(user.id), userName: user.username });
      });
      cell.append(select, " ", pair);
      return cell;
    }
    if (device.requiresTap) {
      const reconnect = el("button", { type: "button", className: "primary", textContent: "Reconnect" });
      reconnect.addEventListener("click", () => act("/reconnect", { deviceId: device.id }));
      cell.append(reconnect, " ");
    }
    const unpair = el("button", { type: "button", className: "secondary", textContent: "Unpair" });
    unpair.addEventListener("click", () => act("/unpair", { deviceId: device.id }));
    cell.append(unpair);
    return cell;
  }

  function renderDevices() {
    const body = $("presence").tBodies[0];
    body.replaceChildren();
    const sorted = [...devices.values()].sort((a, b) => (b.isPaired - a.isPaired) || (a.beaconId - b.beaconId));
    for (const device of sorted) {
      const state = el("td", { textContent: STATE_TEXT[device.state] || device.state });
      if (device.isConnected) state.append(" ", el("span", { className: "badge", textContent: "link" }));
      const cells = [
        el("th", { scope: "row", textContent: device.name }),
        el("td", { textContent: device.userName || "–" }),
        // The room of the scanner that hears it best (absent from an older appliance's answer).
        el("td", { className: "area", textContent: device.area || "–" }),
        el("td", { textContent: device.rssi === null ? "–" : `${device.rssi} dBm` }),
        el("td", { textContent: localTime(device.lastSeen) }),
        state,
        actions(device),
      ];
      // Labels for the phone layout, where each row becomes a card (see style.css).
      ["Name", "User", "Area", "RSSI", "Last seen", "State", ""].forEach((label, i) => { cells[i].dataset.label = label; });
      const row = el("tr", {}, ...cells);
      row.dataset.id = device.id;
      row.dataset.state = device.state;
      row.classList.toggle("needs-tap", device.requiresTap);
      body.append(row);
    }
    $("presence-empty").hidden = devices.size > 0;
  }

  socket.on("devices2v", (data) => {
    devices = new Map(data.discovered.map((d) => [d.id, d]));
    renderDevices();
  });
  socket.on("presence2v", (device) => {
    if (device.removed) devices.delete(device.id);
    else devices.set(device.id, device);
    renderDevices();
  });

  api("GET", "/api/users").then((data) => { users = data.users; renderDevices(); }).catch((err) => showError(err.message));
  loadChart(chartDay).catch((err) => showError(err.message));
})();
