// ChargeLedger operator console: plain JavaScript, no build step, no other script.
// The page's shell holds no data. With the API key kept in sessionStorage (this tab only),
// this script fetches the page's server-rendered fragment, follows the event stream
// (GET /api/stream, read with fetch so that the key goes in the Authorization header) and
// sends commands through the API's command routes.
"use strict";

const KEY = "chargeledger.apiKey";
const body = document.body;
const page = body.dataset.page;
const content = document.getElementById("content");

function apiKey() {
  return sessionStorage.getItem(KEY);
}

function headers(extra) {
  return Object.assign({ Authorization: "Bearer " + apiKey() }, extra || {});
}

function esc(text) {
  return String(text === null || text === undefined ? "" : text).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
  );
}

// fetch with the key; a 401 signs out.
async function api(url, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(url, opts);
  if (response.status === 401) {
    signOut("The API key was refused: sign in again.");
    throw new Error("unauthorized");
  }
  return response;
}

// -- sign-in --------------------------------------------------------------------------------

function showLogin(message) {
  content.hidden = true;
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("key-input").focus();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  document.getElementById("caller").textContent = "";
  document.getElementById("logout").hidden = true;
  stopStreams();
  showLogin(message);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = document.getElementById("key-input").value.trim();
  if (!value) return;
  sessionStorage.setItem(KEY, value);
  document.getElementById("login").hidden = true;
  content.hidden = false;
  load();
});

document.getElementById("logout").addEventListener("click", () => signOut(""));

// -- the page's fragment ----------------------------------------------------------------------

async function fetchFragment() {
  const response = await api("/console/fragment/" + page + location.search);
  const text = await response.text();
  if (!response.ok) {
    let detail = text;
    try {
      detail = JSON.parse(text).detail || text;
    } catch (_) {
      /* not JSON */
    }
    throw new Error(response.status + ": " + detail);
  }
  document.getElementById("caller").textContent = response.headers.get("X-Caller") || "";
  document.getElementById("logout").hidden = false;
  return text;
}

async function load() {
  try {
    content.innerHTML = await fetchFragment();
  } catch (error) {
    if (error.message !== "unauthorized") {
      content.innerHTML = '<p class="error" role="alert">' + esc(error.message) + "</p>";
    }
    return;
  }
  content.querySelectorAll("form[data-navigate]").forEach(navigateOnSubmit);
  const live = body.dataset.live;
  if (live === "stations") stationsPage();
  else if (live === "events") eventsPage();
  else if (live === "refresh") refreshPage();
  if (page === "station") commandPanel();
  content.querySelectorAll("form[data-api-method]").forEach(apiForm);
  body.dataset.ready = "true";
}

// A filter form changes the address (so it can be bookmarked) and reloads the fragment.
function navigateOnSubmit(form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) params.append(name, value);
    history.pushState(null, "", location.pathname + "?" + params.toString());
    stopStreams();
    load();
  });
}
window.addEventListener("popstate", () => {
  stopStreams();
  load();
});

// -- the event stream -------------------------------------------------------------------------

const streams = [];

function stopStreams() {
  while (streams.length) streams.pop().abort();
}

function setStreamState(text) {
  const state = document.getElementById("stream-state");
  if (state) state.textContent = text;
}

// Server-Sent Events from /api/stream, read with fetch (EventSource cannot send the key).
// Reconnects after the last id it saw, so it misses nothing and sees nothing twice.
function follow(params, onEvents) {
  const controller = new AbortController();
  streams.push(controller);
  let after = params.get("after");
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const query = new URLSearchParams(params);
        if (after !== null) query.set("after", after);
        const response = await api("/api/stream?" + query.toString(), {
          signal: controller.signal,
        });
        if (!response.ok) throw new Error("stream: " + response.status);
        setStreamState("Following.");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          const batch = [];
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const message = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let data = null;
            for (const line of message.split("\n")) {
              if (line.startsWith("id: ")) after = line.slice(4);
              else if (line.startsWith("data: ")) data = line.slice(6);
            }
            if (data !== null) batch.push(JSON.parse(data));
          }
          if (batch.length) onEvents(batch);
        }
      } catch (error) {
        if (controller.signal.aborted || error.message === "unauthorized") return;
        setStreamState("Stream interrupted; reconnecting…");
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
}

// Runs fn at most once per animation frame, however often it is asked for.
function perFrame(fn) {
  let asked = false;
  return () => {
    if (asked) return;
    asked = true;
    requestAnimationFrame(() => {
      asked = false;
      fn();
    });
  };
}

// -- stations: a virtualised live table -------------------------------------------------------

function stationsPage() {
  const ROW = 34;
  const scroller = document.getElementById("station-body");
  const spacer = scroller.querySelector(".vspacer");
  const holder = scroller.querySelector(".vrows");
  const filters = document.getElementById("station-filters");
  const count = document.getElementById("station-count");
  const rows = new Map();
  let shown = [];
  const dirty = new Set();
  let fetching = false;

  function matches(row, f) {
    if (f.connected && String(row.connected) !== f.connected) return false;
    if (f.protocol && row.protocol !== f.protocol) return false;
    if (f.boot && row.boot !== f.boot) return false;
    if (f.problems && !row.problems) return false;
    if (f.status && !Object.values(row.connectors).includes(f.status)) return false;
    if (f.q) {
      const hay = [row.id, row.vendor, row.model, row.firmware].join(" ").toLowerCase();
      if (!hay.includes(f.q)) return false;
    }
    return true;
  }

  function refilter() {
    const data = new FormData(filters);
    const f = {
      q: (data.get("q") || "").trim().toLowerCase(),
      connected: data.get("connected"),
      protocol: data.get("protocol"),
      status: data.get("status"),
      boot: data.get("boot"),
      problems: data.get("problems"),
    };
    shown = [];
    for (const row of rows.values()) if (matches(row, f)) shown.push(row);
    shown.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    count.textContent = shown.length + " of " + rows.size;
    spacer.style.height = shown.length * ROW + "px";
    draw();
  }

  function cell(text, cls) {
    return '<span role="cell"' + (cls ? ' class="' + cls + '"' : "") + ">" + text + "</span>";
  }

  function rowHtml(row) {
    const connectors = Object.entries(row.connectors)
      .map(([k, v]) => '<span class="badge status-' + esc(v) + '" title="' + esc(k) + '">' +
        esc(k === "station" ? "station" : k) + " " + esc(v) + "</span>")
      .join(" ");
    return (
      '<div class="vrow" role="row" data-station="' + esc(row.id) + '">' +
      cell('<a href="/console/station?id=' + encodeURIComponent(row.id) + '">' + esc(row.id) + "</a>") +
      cell(row.connected ? '<span class="badge ok">connected</span>' : '<span class="badge">offline</span>', "connection") +
      cell(esc(row.boot || "—"), "boot") +
      cell(esc(row.protocol || "—")) +
      cell(esc([row.vendor, row.model].filter(Boolean).join(" / ") || "—")) +
      cell(esc(row.firmware || "—")) +
      cell(connectors || "—", "connectors") +
      cell(esc(row.heartbeat ? row.heartbeat.slice(0, 19).replace("T", " ") : "—"), "time") +
      cell(row.problems ? '<span class="badge bad">' + row.problems + "</span>" : "", "problems") +
      "</div>"
    );
  }

  // Only the rows in view (and a few around them) are in the DOM.
  const draw = perFrame(() => {
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - 5);
    const last = Math.min(shown.length, first + Math.ceil(scroller.clientHeight / ROW) + 10);
    holder.style.transform = "translateY(" + first * ROW + "px)";
    holder.innerHTML = shown.slice(first, last).map(rowHtml).join("");
  });

  async function refetch() {
    if (fetching || !dirty.size) return;
    fetching = true;
    const ids = Array.from(dirty).slice(0, 200);
    ids.forEach((id) => dirty.delete(id));
    try {
      const query = new URLSearchParams();
      ids.forEach((id) => query.append("id", id));
      const response = await api("/console/data/stations?" + query.toString());
      if (response.ok) for (const row of await response.json()) rows.set(row.id, row);
      refilter();
    } finally {
      fetching = false;
      if (dirty.size) flush();
    }
  }
  const flush = perFrame(refetch);

  scroller.addEventListener("scroll", draw, { passive: true });
  window.addEventListener("resize", draw);
  filters.addEventListener("input", refilter);
  filters.addEventListener("submit", (event) => event.preventDefault());

  (async () => {
    const ready = await (await fetch("/health/ready")).json();
    const response = await api("/console/data/stations");
    for (const row of await response.json()) rows.set(row.id, row);
    refilter();
    // Events after the list was read change it; those just before it are read twice, harmless.
    follow(new URLSearchParams({ after: String(ready.position) }), (events) => {
      for (const item of events) if (item.event && item.event.station) dirty.add(item.event.station);
      flush();
    });
  })();
}

// -- event log: a live tail ---------------------------------------------------------------------

function frameInfo(item) {
  const event = item.event || {};
  let transaction = null;
  let what = "";
  if (item.kind === "FrameLogged" && event.text) {
    what = (event.direction === "in" ? "→ " : "← ") + event.text;
    try {
      const frame = JSON.parse(event.text);
      const payload = frame[0] === 2 ? frame[3] : frame[2];
      if (payload && typeof payload === "object") {
        transaction = payload.transactionId ??
          (payload.transactionInfo ? payload.transactionInfo.transactionId : null);
      }
    } catch (_) {
      /* not JSON: shown as is */
    }
  } else if (item.kind === "CommandRequested") {
    what = (event.key || "") + " asked " + (event.command || "") + " " + JSON.stringify(event.payload || {});
  } else {
    what = JSON.stringify(event);
  }
  return { transaction, what };
}

function eventsPage() {
  const rowsEl = document.getElementById("event-rows");
  const query = new URLSearchParams(location.search);
  const pause = document.getElementById("event-pause");
  let paused = false;
  const pending = [];
  const MAX = 1000;

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) draw();
  });

  function rowHtml(item) {
    const event = item.event || {};
    const station = event.station;
    const { transaction, what } = frameInfo(item);
    const at = event.at ? new Date(event.at * 1000).toISOString().slice(0, 23).replace("T", " ") : "";
    return (
      '<tr class="kind-' + esc(item.kind) + '"><td class="num">' + item.position + "</td>" +
      '<td class="time">' + at + "</td><td>" + esc(item.kind) + "</td><td class=\"station\">" +
      (station ? '<a href="/console/station?id=' + encodeURIComponent(station) + '">' + esc(station) + "</a>" : "") +
      "</td><td>" +
      (station && transaction !== null && transaction !== undefined
        ? '<a href="/console/transaction?station=' + encodeURIComponent(station) + "&id=" +
          encodeURIComponent(transaction) + '">' + esc(transaction) + "</a>"
        : "") +
      '</td><td><code class="frame">' + esc(what) + "</code></td></tr>"
    );
  }

  const draw = perFrame(() => {
    if (paused || !pending.length) return;
    const html = pending.splice(0).reverse().map(rowHtml).join("");
    rowsEl.insertAdjacentHTML("afterbegin", html);
    while (rowsEl.rows.length > MAX) rowsEl.deleteRow(-1);
  });

  (async () => {
    const ready = await (await fetch("/health/ready")).json();
    const back = Number(query.get("back") || 200);
    const params = new URLSearchParams({ after: String(Math.max(0, ready.position - back)) });
    if (query.get("station")) params.set("station", query.get("station"));
    if (query.get("kind")) params.set("kind", query.get("kind"));
    follow(params, (events) => {
      pending.push(...events);
      if (pending.length > MAX) pending.splice(0, pending.length - MAX);
      draw();
    });
  })();
}

// -- pages that refresh their live parts --------------------------------------------------------

// When an event of the page's station (or any event) arrives, the fragment is fetched again,
// at most once a second, and its [data-live] sections replace the shown ones: forms and
// their answers stay as they are.
function refreshPage() {
  const holder = content.querySelector("[data-station]");
  const station = holder ? holder.dataset.station : null;
  let timer = null;
  async function refresh() {
    timer = null;
    let text;
    try {
      text = await fetchFragment();
    } catch (_) {
      return;
    }
    const fresh = new DOMParser().parseFromString(text, "text/html");
    for (const part of fresh.querySelectorAll("[data-live][id]")) {
      const old = document.getElementById(part.id);
      if (old) old.replaceWith(document.importNode(part, true));
    }
  }
  (async () => {
    const ready = await (await fetch("/health/ready")).json();
    const params = new URLSearchParams({ after: String(ready.position) });
    if (station) params.set("station", station);
    follow(params, () => {
      if (timer === null) timer = setTimeout(refresh, 1000);
    });
  })();
}

// -- the command panel ----------------------------------------------------------------------------

function readField(input) {
  const raw = input.value.trim();
  if (raw === "") return undefined;
  switch (input.dataset.kind) {
    case "int":
      return parseInt(raw, 10);
    case "float":
      return parseFloat(raw);
    case "bool":
      return raw === "true";
    case "id":
      return /^-?\d+$/.test(raw) ? parseInt(raw, 10) : raw;
    case "lines":
      return raw.split("\n").map((s) => s.trim()).filter(Boolean);
    case "pairs": {
      const pairs = {};
      for (const line of raw.split("\n")) {
        const at = line.indexOf("=");
        if (at > 0) pairs[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
      return pairs;
    }
    case "json":
      return JSON.parse(raw);
    default:
      return raw;
  }
}

function showAnswer(output, ok, title, value) {
  output.hidden = false;
  output.className = "answer " + (ok ? "ok" : "bad");
  output.innerHTML = "<strong>" + esc(title) + "</strong><pre>" + esc(JSON.stringify(value, null, 2)) + "</pre>";
}

async function send(output, url, payload) {
  output.hidden = false;
  output.className = "answer";
  output.textContent = "Waiting for the station…";
  const response = await api(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  const answer = await response.json().catch(() => ({}));
  if (response.ok) {
    const accepted = answer.accepted !== undefined ? answer.accepted : true;
    const status = answer.status ? answer.status : "answered";
    showAnswer(output, accepted, "The station answered " + status, answer);
  } else {
    showAnswer(output, false, response.status + " " + (answer.title || "") + ": " + (answer.detail || ""), answer);
  }
}

function commandPanel() {
  const panel = document.getElementById("commands");
  if (!panel) return;
  const holder = content.querySelector("[data-station]");
  const station = holder.dataset.station;
  const protocol = holder.dataset.protocol;
  const base = "/api/stations/" + encodeURIComponent(station);

  panel.querySelectorAll("[role=tab]").forEach((tab) => {
    tab.addEventListener("click", () => {
      panel.querySelectorAll("[role=tab]").forEach((t) => t.setAttribute("aria-selected", String(t === tab)));
      panel.querySelectorAll("[data-tab-panel]").forEach((p) => {
        p.hidden = p.dataset.tabPanel !== tab.dataset.tab;
      });
    });
  });

  panel.querySelectorAll("form.command").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const output = form.querySelector("output");
      const payload = { use_case: form.dataset.useCase };
      try {
        for (const input of form.querySelectorAll("[data-kind]")) {
          const value = readField(input);
          if (value !== undefined) payload[input.name] = value;
        }
      } catch (error) {
        showAnswer(output, false, "Not sent: " + error.message, payload);
        return;
      }
      await send(output, base + "/commands", payload);
    });
  });

  const form = document.getElementById("message-form");
  if (!form) return;
  const action = document.getElementById("message-action");
  const editor = document.getElementById("message-payload");
  const check = document.getElementById("message-check");
  const schemaView = document.getElementById("message-schema");
  const link = document.getElementById("schema-link");
  const sendButton = document.getElementById("message-send");
  const folder = protocol === "ocpp1.6" ? "v16" : "v201";
  let timer = null;

  function schemaUrl(name) {
    return "/console/schemas/" + folder + "/" + name + (folder === "v16" ? "" : "Request") + ".json";
  }

  // The schema of the action, and a payload with its required properties to fill in.
  async function loadSchema() {
    link.href = schemaUrl(action.value);
    const response = await fetch(schemaUrl(action.value));
    if (!response.ok) {
      schemaView.textContent = "(no schema)";
      return;
    }
    const schema = await response.json();
    schemaView.textContent = JSON.stringify(schema, null, 2);
    const skeleton = {};
    for (const name of schema.required || []) skeleton[name] = null;
    editor.value = JSON.stringify(skeleton, null, 2);
    validate();
  }

  // Checked by the server with the same check message mode makes before sending.
  async function validate() {
    let payload;
    try {
      payload = JSON.parse(editor.value);
    } catch (error) {
      check.className = "check bad";
      check.textContent = "Not JSON: " + error.message;
      sendButton.disabled = true;
      return;
    }
    const response = await api(
      "/console/validate/" + encodeURIComponent(protocol) + "/" + encodeURIComponent(action.value),
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) },
    );
    const verdict = await response.json();
    check.className = "check " + (verdict.valid ? "ok" : "bad");
    check.textContent = verdict.valid
      ? "Valid " + action.value + " payload."
      : verdict.code + ": " + verdict.message;
    sendButton.disabled = !verdict.valid;
  }

  action.addEventListener("change", loadSchema);
  editor.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(validate, 300);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await send(form.querySelector("output"), base + "/calls/" + encodeURIComponent(action.value), JSON.parse(editor.value));
  });
  loadSchema();
}

// A form that writes through an API route (an admin's tariff, say): data-api-method and
// data-api-path ({name} is the field's value), its fields read as the command panel reads
// them; a [data-body] field is the whole body, else the other fields make it. The page's
// live parts show the change when its event arrives.
function apiForm(form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const output = form.querySelector("output");
    let path = form.dataset.apiPath;
    let payload = {};
    try {
      for (const input of form.querySelectorAll("[data-kind]")) {
        const value = readField(input);
        if (input.hasAttribute("data-in-path")) path = path.replace("{" + input.name + "}", encodeURIComponent(value || ""));
        else if (input.hasAttribute("data-body")) payload = value;
        else if (value !== undefined) payload[input.name] = value;
      }
    } catch (error) {
      showAnswer(output, false, "Not sent: " + error.message, {});
      return;
    }
    const response = await api(path, {
      method: form.dataset.apiMethod,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok) showAnswer(output, true, response.status + " done", answer);
    else showAnswer(output, false, response.status + " " + (answer.title || "") + ": " + (answer.detail || ""), answer);
  });
}

// -- start ------------------------------------------------------------------------------------------

if (apiKey()) {
  load();
} else {
  showLogin("");
}
