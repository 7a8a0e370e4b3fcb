// The ChatStats page: plain modules, no build step. The session cookie (HttpOnly) rides on
// every request and stream; the page never keeps the token after signing in.
import { renderMessage, sortChats } from "/static/render.js";

const $ = (id) => document.getElementById(id);
const state = {
  chats: new Map(), // id -> Chat
  chatId: null,
  messages: new Map(), // id -> Message of the open chat
  byGuid: new Map(), // guid -> Message of the open chat
  nextUrl: null, // the Link rel=next of the open chat's older pages
  loadingOlder: false,
  chatStream: null,
  listStream: null,
  metricsStream: null,
  searchNext: null,
};

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) { showSignIn(); throw new Error("signed out"); }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error?.message || `HTTP ${response.status}`);
  }
  return response;
}

function nextLink(response) {
  const link = response.headers.get("Link") || "";
  const match = link.match(/<([^>]+)>;\s*rel="next"/);
  return match ? match[1] : null;
}

// --- sign in ---------------------------------------------------------------------------------
function showSignIn() {
  for (const s of [state.chatStream, state.listStream, state.metricsStream]) s?.close();
  $("app").hidden = true;
  $("signin").hidden = false;
  $("token").focus();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  const response = await fetch("/api/session", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }), credentials: "same-origin",
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    $("signin-error").textContent = body.error?.message || `Sign-in failed (${response.status})`;
    return;
  }
  $("token").value = "";
  $("signin-error").textContent = "";
  start();
});

$("signout").addEventListener("click", async () => {
  await fetch("/api/session", { method: "DELETE", credentials: "same-origin" });
  showSignIn();
});

// --- streams ---------------------------------------------------------------------------------
function stream(url, handlers, onLagged) {
  const source = new EventSource(url, { withCredentials: true });
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
  }
  source.addEventListener("error", (e) => {
    if (e.data) { // the daemon's own error event: the stream is over
      source.close();
      const err = JSON.parse(e.data);
      if (err.code === "lagged" && onLagged) onLagged();
    }
  });
  return source;
}

// --- chat list -------------------------------------------------------------------------------
function chatLabel(chat) {
  return chat.last_message_time ? new Date(chat.last_message_time).toLocaleString() : "no messages";
}

function renderChats() {
  const list = $("chats");
  const focused = document.activeElement?.closest?.("[data-chat-id]")?.dataset.chatId;
  const items = sortChats([...state.chats.values()]).map((chat) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chat";
    button.dataset.chatId = String(chat.id);
    if (chat.id === state.chatId) button.setAttribute("aria-current", "true");
    const title = document.createElement("span");
    title.className = "chat-title";
    title.textContent = chat.title;
    const meta = document.createElement("span");
    meta.className = "chat-meta";
    meta.textContent = `${chat.message_count} · ${chatLabel(chat)}`;
    button.append(title, meta);
    button.addEventListener("click", () => openChat(chat.id));
    li.append(button);
    return li;
  });
  list.replaceChildren(...items);
  if (focused) list.querySelector(`[data-chat-id="${focused}"]`)?.focus();
}

function watchChats() {
  state.listStream?.close();
  state.listStream = stream("/api/live-sync/stream/chats", {
    initial: (d) => { state.chats = new Map(d.chats.map((c) => [c.id, c])); renderChats(); },
    update: (d) => { for (const c of d.chats) state.chats.set(c.id, c); renderChats(); },
  }, watchChats);
}

// --- one chat --------------------------------------------------------------------------------
function putMessages(messages) {
  for (const m of messages) {
    state.messages.set(m.id, m);
    state.byGuid.set(m.guid, m);
  }
}

function ordered() {
  return [...state.messages.values()].sort((a, b) =>
    a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : a.id - b.id);
}

function renderMessages({ keepBottom = false, keepTop = false } = {}) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const chat = state.chats.get(state.chatId);
  const nodes = ordered().map((m) => renderMessage(m, state.byGuid, chat?.is_group ?? false));
  $("message-list").replaceChildren(...nodes);
  if (keepTop) box.scrollTop = box.scrollHeight - fromBottom;
  else if (keepBottom || atBottom) box.scrollTop = box.scrollHeight;
}

async function openChat(id, focusGuid = null) {
  state.chatStream?.close();
  state.chatId = id;
  state.messages = new Map();
  state.byGuid = new Map();
  state.nextUrl = null;
  document.body.classList.add("chat-open");
  $("search-results").hidden = true;
  const chat = state.chats.get(id) || await (await api(`/api/chats/${id}`)).json();
  state.chats.set(id, chat);
  $("chat-title").textContent = chat.title;
  renderChats();
  $("message-list").replaceChildren();
  await new Promise((resolve) => {
    state.chatStream = stream(`/api/live-sync/stream/chat/${id}/messages`, {
      initial: (d) => {
        if (state.chatId !== id) return;
        state.messages = new Map(); state.byGuid = new Map();
        putMessages(d.messages);
        const oldest = d.messages[d.messages.length - 1];
        state.nextUrl = d.complete || !oldest ? null
          : `/api/chats/${id}/messages?limit=50&before_id=${oldest.id}`;
        renderMessages({ keepBottom: true });
        resolve();
      },
      update: (d) => {
        if (state.chatId !== id) return;
        putMessages(d.messages);
        renderMessages();
      },
    }, () => openChat(id));
  });
  if (focusGuid) await reveal(focusGuid);
  else $("messages").focus({ preventScroll: true });
}

async function loadOlder() {
  if (!state.nextUrl || state.loadingOlder) return false;
  state.loadingOlder = true;
  const id = state.chatId;
  try {
    const response = await api(state.nextUrl);
    const page = await response.json();
    if (state.chatId !== id) return false;
    state.nextUrl = nextLink(response);
    putMessages(page);
    renderMessages({ keepTop: true });
    return true;
  } finally {
    state.loadingOlder = false;
  }
}

async function reveal(guid) {
  // Page back until the message is loaded (bounded), then show and mark it.
  for (let i = 0; i < 40 && !state.byGuid.has(guid); i++) {
    if (!(await loadOlder())) break;
  }
  const node = document.querySelector(`[data-message-guid="${CSS.escape(guid)}"]`);
  if (node) {
    node.classList.add("found");
    node.scrollIntoView({ block: "center" });
    node.focus({ preventScroll: true });
  }
}

new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting) && state.chatId !== null) loadOlder();
}, { root: $("messages"), rootMargin: "300px 0px 0px 0px" }).observe($("top-sentinel"));

$("back").addEventListener("click", () => {
  document.body.classList.remove("chat-open");
  $("chats").querySelector(`[data-chat-id="${state.chatId}"]`)?.focus();
});

// --- search ----------------------------------------------------------------------------------
async function runSearch(url, append) {
  const response = await api(url);
  const results = await response.json();
  state.searchNext = nextLink(response);
  const list = $("results");
  if (!append) list.replaceChildren();
  for (const m of results) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "result";
    button.dataset.resultGuid = m.guid;
    const where = document.createElement("span");
    where.className = "chat-meta";
    const chat = state.chats.get(m.chat_id);
    const who = m.is_from_me ? "Me" : (m.sender?.name || m.sender?.identifier || "Unknown");
    where.textContent = `${chat ? chat.title : "Chat " + m.chat_id} · ${who} · ${new Date(m.timestamp).toLocaleString()}`;
    const text = document.createElement("span");
    text.textContent = m.text || "";
    button.append(where, text);
    button.addEventListener("click", () => { if (m.chat_id) openChat(m.chat_id, m.guid); });
    li.append(button);
    list.append(li);
  }
  if (!append && results.length === 0) {
    const li = document.createElement("li");
    li.textContent = "No messages match.";
    list.append(li);
  }
  $("results-more").hidden = !state.searchNext;
}

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = $("search").value.trim();
  if (!q) return;
  $("search-results").hidden = false;
  document.body.classList.add("chat-open");
  await runSearch(`/api/search?limit=50&q=${encodeURIComponent(q)}`, false);
  $("results").querySelector("button")?.focus();
});
$("results-more").addEventListener("click", () => runSearch(state.searchNext, true));

// --- health and metrics ----------------------------------------------------------------------
function renderHealth(health, metrics) {
  const rows = [];
  if (health) {
    rows.push(["Version", health.version], ["Uptime", `${Math.round(health.uptime_s)} s`]);
    const c = health.counts || {};
    rows.push(["Chats", c.chats], ["Messages", c.messages], ["Contacts", c.contacts],
      ["Conversations", c.conversations]);
    const imp = health.import || {};
    rows.push(["Import", `${imp.state}${imp.phase ? " · " + imp.phase : ""} (${imp.done}/${imp.total})`]);
    rows.push(["Live sync", health.live ? `${health.live.state} · ${health.live.messages} messages` : "off"]);
    if (health.analysis) rows.push(["Analysis", health.analysis.state]);
  }
  if (metrics) {
    rows.push(["Open streams", metrics.sse?.open_streams], ["Hub published", metrics.hub?.published],
      ["Hub dropped", metrics.hub?.dropped]);
    for (const [name, l] of Object.entries(metrics.latencies || {})) {
      rows.push([name, `p50 ${l.p50_ms ?? "–"} ms · p95 ${l.p95_ms ?? "–"} ms (${l.count})`]);
    }
  }
  $("health-list").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v ?? "–";
    return [dt, dd];
  }));
}

let lastHealth = null;
$("health-toggle").addEventListener("click", async () => {
  const panel = $("health");
  panel.hidden = !panel.hidden;
  $("health-toggle").setAttribute("aria-expanded", String(!panel.hidden));
  state.metricsStream?.close();
  if (panel.hidden) return;
  lastHealth = await (await api("/api/health")).json();
  renderHealth(lastHealth, null);
  state.metricsStream = stream("/api/metrics/stream?interval=2", {
    metrics: async (m) => {
      try { lastHealth = await (await api("/api/health")).json(); } catch { /* keep the last */ }
      renderHealth(lastHealth, m);
    },
  });
});

// --- start -----------------------------------------------------------------------------------
async function start() {
  $("signin").hidden = true;
  $("app").hidden = false;
  watchChats();
}

(async () => {
  const response = await fetch("/api/chats?limit=1", { credentials: "same-origin" });
  if (response.ok) start(); else showSignIn();
})();
