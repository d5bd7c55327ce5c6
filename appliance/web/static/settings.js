// The settings page: timelapse delays, users and publisher tokens, through the JSON API.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const api = window.applianceApi;

  function say(text, bad = false) {
    const box = $("message");
    box.textContent = text;
    box.hidden = !text;
    box.classList.toggle("error", bad);
  }

  function button(text, onClick, cls = "secondary") {
    const b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  async function run(action, done) {
    try {
      await action();
      if (done) say(done);
    } catch (err) {
      say(err.message, true);
    }
  }

  // -- the Bambu printer ---------------------------------------------------------------------------
  let offered = null;
  async function loadPrinter() {
    const p = (await api("GET", "/status")).printer;
    if (!p.configured) {
      $("printer-setup").textContent = "No printer set up: enter its address, serial and access code.";
    } else {
      const link = (l) => (l.connected ? "connected" : `not connected${l.lastError ? ` (${l.lastError})` : ""}`);
      $("printer-setup").textContent = `${p.host}, serial ${p.serial}: MQTT ${link(p.mqtt)}; camera ${link(p.camera)}.`;
    }
    if (document.activeElement !== $("printer-host") && document.activeElement !== $("printer-serial")) {
      $("printer-host").value = p.host || "";
      $("printer-serial").value = p.serial || "";
    }
    const problem = p.tls && p.tls.problem;
    $("printer-problem").textContent = problem || "";
    $("printer-problem").hidden = !problem;
    offered = p.tls ? p.tls.offered : null;
    $("printer-trust").hidden = !offered;
  }
  $("printer-address-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { host: $("printer-host").value.trim(), serial: $("printer-serial").value.trim() };
    run(async () => {
      const answer = await api("PUT", "/api/printer/address", body);
      say(answer.message);
      await loadPrinter();
    });
  });
  $("printer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const field = $("printer-code");
    const body = { accessCode: field.value.trim() };
    field.value = "";
    run(async () => {
      const answer = await api("PUT", "/api/printer/access-code", body);
      say(answer.message);
      await loadPrinter();
    });
  });
  $("printer-trust").addEventListener("click", () => run(async () => {
    await api("POST", "/api/printer/trust", { fingerprint: offered });
    await loadPrinter();
  }, "The new certificate is trusted."));

  // -- timelapse -----------------------------------------------------------------------------------
  const DELAYS = ["image_delay", "temphum_delay", "status_delay"];
  async function loadTimelapse() {
    const config = await api("GET", "/api/timelapse_config");
    for (const key of DELAYS) $(key).value = config[key];
  }
  $("timelapse-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = Object.fromEntries(DELAYS.map((key) => [key, Number($(key).value)]));
    run(() => api("PUT", "/api/timelapse_config", body), "Delays saved.");
  });

  // -- users ---------------------------------------------------------------------------------------
  async function loadUsers() {
    const { users } = await api("GET", "/api/users");
    const list = $("users");
    list.replaceChildren();
    for (const user of users) {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = user.username;
      const change = button("Change password", () => {
        const password = window.prompt(`New password for ${user.username} (8 characters or more)`);
        if (password) run(() => api("PUT", `/api/users/${encodeURIComponent(user.username)}/password`, { password }), "Password changed.");
      });
      const remove = button("Remove", () => {
        if (window.confirm(`Remove ${user.username}?`)) {
          run(async () => { await api("DELETE", `/api/users/${encodeURIComponent(user.username)}`); await loadUsers(); }, "User removed.");
        }
      });
      item.append(name, " ", change, " ", remove);
      list.append(item);
    }
  }
  $("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { username: $("new-username").value, password: $("new-password").value };
    run(async () => { await api("POST", "/api/users", body); event.target.reset(); await loadUsers(); }, "User added.");
  });

  // -- tokens --------------------------------------------------------------------------------------
  async function loadTokens() {
    const { tokens } = await api("GET", "/api/tokens");
    const list = $("tokens");
    list.replaceChildren();
    for (const token of tokens) {
      const item = document.createElement("li");
      const name = document.createElement("span");
      const used = token.lastUsedAt ? `last used ${new Date(token.lastUsedAt).toLocaleString()}` : "never used";
      name.textContent = `${token.name} (${used})`;
      const revoke = button("Revoke", () => {
        if (window.confirm(`Revoke ${token.name}? Its publisher stops working.`)) {
          run(async () => { await api("DELETE", `/api/tokens/${encodeURIComponent(token.name)}`); await loadTokens(); }, "Token revoked.");
        }
      });
      item.append(name, " ", revoke);
      list.append(item);
    }
  }
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(async () => {
      const created = await api("POST", "/api/tokens", { name: $("token-name").value });
      $("new-token-value").textContent = created.token;
      $("new-token").hidden = false;
      event.target.reset();
      await loadTokens();
    }, "Token created.");
  });

  Promise.all([loadTimelapse(), loadUsers(), loadTokens(), loadPrinter()]).catch((err) => say(err.message, true));
})();
