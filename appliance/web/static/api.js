// The JSON API from the pages: errors become exceptions with the server's message, and an ended
// session sends the browser to the login page (and back here afterwards).
"use strict";

window.applianceApi = async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
    credentials: "same-origin",
  });
  if (response.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
    throw new Error("logged out");
  }
  const data = await response.json();
  if (!response.ok) throw new Error(data.message || response.statusText);
  return data;
};
