// The ChatStats page: plain modules, no build step. The session cookie (HttpOnly) rides on
// every request and stream; the page never keeps the token after signing in.
import { analysisView, conversationsView } from "/static/analysis.js";
import { chatbotView } from "/static/chatbot.js";
import { localTime, personName, renderMessage, sortChats } from "/static/render.js";
import { overviewView, statsView } from "/static/stats.js";

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
  view: "messages",
  viewStreams: new Set(), // streams a view opened, closed when it is left
  contacts: null, // id -> name, fetched when a view needs names beyond the open chat
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
  for (const s of [state.chatStream, state.listStream, state.metricsStream, ...state.viewStreams]) s?.close();
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
  return chat.last_message_time ? localTime(chat.last_message_time) : "no messages";
}

const chatNodes = new Map(); // chat id -> its <li>, reused so a live update moves, not redraws

function chatNode(chat) {
  let li = chatNodes.get(chat.id);
  if (!li) {
    li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chat";
    button.dataset.chatId = String(chat.id);
    const title = document.createElement("span");
    title.className = "chat-title";
    const meta = document.createElement("span");
    meta.className = "chat-meta";
    button.append(title, meta);
    button.addEventListener("click", () => openChat(chat.id));
    li.append(button);
    chatNodes.set(chat.id, li);
  }
  const button = li.firstChild;
  button.children[0].textContent = chat.title;
  button.children[1].textContent = `${chat.message_count} · ${chatLabel(chat)}`;
  if (chat.id === state.chatId) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
  return li;
}

function renderChats() {
  // Moves only the nodes out of place (a new message moves one chat to the top), so focus
  // and scroll position survive and the list costs O(changes) per update, not a redraw.
  const list = $("chats");
  const wanted = sortChats([...state.chats.values()]).map(chatNode);
  let at = list.firstChild;
  for (const li of wanted) {
    if (li !== at) list.insertBefore(li, at);
    else at = at.nextSibling;
  }
  while (at) { const next = at.nextSibling; at.remove(); at = next; }
}

function watchChats() {
  state.listStream?.close();
  state.listStream = stream("/api/live-sync/stream/chats", {
    initial: (d) => {
      state.chats = new Map(d.chats.map((c) => [c.id, c]));
      chatNodes.clear(); $("chats").replaceChildren();
      renderChats();
    },
    update: (d) => { for (const c of d.chats) state.chats.set(c.id, c); renderChats(); },
  }, watchChats);
}

// --- one chat --------------------------------------------------------------------------------
// The open chat's messages stay sorted in `state.order` (oldest first) alongside their nodes,
// so a live update or an older page touches only the nodes it brings: new ones are inserted
// where they sort (usually at the end), changed ones (an edit, an unsend, a tapback) are
// replaced in place, and the messages that quote a changed one redraw their quote.
function before(a, b) {
  return a.timestamp < b.timestamp || (a.timestamp === b.timestamp && a.id < b.id);
}

function position(m) {
  const order = state.order;
  let lo = 0, hi = order.length;
  if (hi === 0 || before(order[hi - 1], m)) return hi; // the common live case: newest
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (before(order[mid], m)) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function draw(m) {
  const chat = state.chats.get(state.chatId);
  return renderMessage(m, state.byGuid, chat?.is_group ?? false);
}

function resetMessages() {
  state.messages = new Map();
  state.byGuid = new Map();
  state.order = [];
  state.nodes = new Map();
  $("message-list").replaceChildren();
}

function putMessages(messages, { keepBottom = false, keepTop = false } = {}) {
  const box = $("messages");
  const list = $("message-list");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const changed = new Set();
  const fresh = [];
  for (const m of messages) {
    const old = state.messages.get(m.id);
    state.messages.set(m.id, m);
    state.byGuid.set(m.guid, m);
    if (old) {
      const i = state.order.indexOf(old);
      if (i >= 0) state.order[i] = m;
      const node = state.nodes.get(m.id);
      const next = draw(m);
      node?.replaceWith(next);
      state.nodes.set(m.id, next);
      changed.add(m.guid);
    } else {
      fresh.push(m);
    }
  }
  fresh.sort((a, b) => (before(a, b) ? -1 : 1));
  if (fresh.length && (state.order.length === 0 || before(fresh[fresh.length - 1], state.order[0]))) {
    // A whole older page (or the first one): one fragment in front.
    const frag = document.createDocumentFragment();
    for (const m of fresh) { const n = draw(m); state.nodes.set(m.id, n); frag.append(n); }
    list.prepend(frag);
    state.order = fresh.concat(state.order);
  } else {
    for (const m of fresh) {
      const i = position(m);
      const node = draw(m);
      state.nodes.set(m.id, node);
      const anchor = state.order[i] ? state.nodes.get(state.order[i].id) : null;
      list.insertBefore(node, anchor ?? null);
      state.order.splice(i, 0, m);
    }
  }
  for (const m of fresh) changed.add(m.guid);
  for (const m of state.order) {
    // Quotes of a changed parent, and quotes whose parent just arrived (an older page).
    if (!m.reply_to_guid || !changed.has(m.reply_to_guid) || changed.has(m.guid)) continue;
    const node = state.nodes.get(m.id);
    if (!node) continue;
    const next = draw(m);
    node.replaceWith(next);
    state.nodes.set(m.id, next);
  }
  if (keepTop) box.scrollTop = box.scrollHeight - fromBottom;
  else if (keepBottom || atBottom) box.scrollTop = box.scrollHeight;
}

async function openChat(id, focusGuid = null) {
  state.chatStream?.close();
  state.chatId = id;
  resetMessages();
  state.nextUrl = null;
  document.body.classList.add("chat-open");
  $("search-results").hidden = true;
  const chat = state.chats.get(id) || await (await api(`/api/chats/${id}`)).json();
  state.chats.set(id, chat);
  $("chat-title").textContent = chat.title;
  renderChats();
  showView("messages");
  await new Promise((resolve) => {
    state.chatStream = stream(`/api/live-sync/stream/chat/${id}/messages`, {
      initial: (d) => {
        if (state.chatId !== id) return;
        resetMessages();
        putMessages(d.messages, { keepBottom: true });
        const oldest = d.messages[d.messages.length - 1];
        state.nextUrl = d.complete || !oldest ? null
          : `/api/chats/${id}/messages?limit=50&before_id=${oldest.id}`;
        resolve();
      },
      update: (d) => {
        if (state.chatId !== id) return;
        putMessages(d.messages);
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
    putMessages(page, { keepTop: true });
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
  const node = $("message-list").querySelector(`[data-message-guid="${CSS.escape(guid)}"]`);
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

// --- views: a chat's messages, statistics and conversations; the overview; analysis --------
const VIEWS = { messages: "messages", stats: "stats-view", conversations: "conversations-view",
  overview: "overview-view", analysis: "analysis-view", ai: "ai-view" };
const VIEW_TITLES = { overview: "Overview", analysis: "Analysis", ai: "AI chat" };
const CHAT_VIEWS = new Set(["messages", "stats", "conversations"]);

function showView(name) {
  state.view = name;
  for (const s of state.viewStreams) s.close();
  state.viewStreams.clear();
  for (const [view, id] of Object.entries(VIEWS)) $(id).hidden = view !== name;
  const inChat = CHAT_VIEWS.has(name) && state.chatId !== null;
  $("chat-tabs").hidden = !inChat;
  for (const b of $("chat-tabs").querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.tab === name));
  $("overview-open").setAttribute("aria-pressed", String(name === "overview"));
  $("analysis-open").setAttribute("aria-pressed", String(name === "analysis"));
  $("ai-open").setAttribute("aria-pressed", String(name === "ai"));
  if (!CHAT_VIEWS.has(name)) {
    $("chat-title").textContent = VIEW_TITLES[name];
    $("search-results").hidden = true;
  } else if (state.chatId !== null) {
    $("chat-title").textContent = state.chats.get(state.chatId)?.title ?? "";
  }
  document.body.classList.add("chat-open");
}

async function showChatTab(tab) {
  showView(tab);
  const id = state.chatId;
  try {
    if (tab === "stats") await loadChatStats(id, null);
    if (tab === "conversations") {
      await conversationsView($("conversations-view"), id, { api, nextLink, openAt: openChat });
    }
  } catch (e) {
    if (state.chatId === id) showProblem(VIEWS[tab], e);
  }
}

function showProblem(id, error) {
  const p = document.createElement("p");
  p.className = "error";
  p.setAttribute("role", "alert");
  p.textContent = `Could not load: ${error.message}`;
  (id === "stats-view" ? $("stats-body") : $(id)).replaceChildren(p);
}

for (const b of $("chat-tabs").querySelectorAll("button")) {
  b.addEventListener("click", () => showChatTab(b.dataset.tab));
}

async function contactNames() {
  if (!state.contacts) {
    const list = await (await api("/api/contacts?limit=500")).json();
    state.contacts = new Map(list.map((c) => [c.id, c.name || c.identifiers?.[0] || `Contact ${c.id}`]));
  }
  return state.contacts;
}

async function loadChatStats(chatId, target) {
  const chat = state.chats.get(chatId);
  const pick = $("stats-for");
  if (target === null) {
    const options = [["chat:" + chatId, "This chat"]];
    for (const p of chat?.participants || []) {
      if (p.contact_id !== null && p.contact_id !== undefined) {
        options.push([`contact:${p.contact_id}`, `${personName(p)}, in every chat`]);
      }
    }
    pick.replaceChildren(...options.map(([v, t]) => { const o = document.createElement("option"); o.value = v; o.textContent = t; return o; }));
    target = options[0][0];
  }
  pick.value = target;
  const [kind, id] = target.split(":");
  $("stats-body").replaceChildren(Object.assign(document.createElement("p"), { className: "muted", textContent: "Loading…" }));
  const data = await (await api(`/api/stats/${kind === "chat" ? "chats" : "contacts"}/${id}`)).json();
  if (state.chatId !== chatId || state.view !== "stats") return;
  const names = new Map((chat?.participants || []).map((p) => [p.contact_id, personName(p)]));
  const label = kind === "chat" ? chat?.title ?? "Chat" : names.get(Number(id)) ?? "Contact";
  const body = $("stats-body");
  body.dataset.statsFor = target;
  body.replaceChildren(statsView(data, label, names));
}

$("stats-for").addEventListener("change", () => {
  loadChatStats(state.chatId, $("stats-for").value).catch((e) => showProblem("stats-view", e));
});

function chatTitle(id, fallback) {
  return state.chats.get(id)?.title ?? fallback ?? `Chat ${id}`;
}

async function showOverview(year = null) {
  showView("overview");
  const box = $("overview-view");
  try {
    const ov = await (await api("/api/stats/overview")).json();
    const y = year ?? (ov.last_message_time ? new Date(ov.last_message_time).getFullYear() : new Date().getFullYear());
    const [wrapped, names] = await Promise.all([
      api(`/api/stats/wrapped?year=${y}`).then((r) => r.json()), contactNames(),
    ]);
    if (state.view !== "overview") return;
    box.replaceChildren(overviewView(ov, wrapped, {
      chatTitle, contactName: (id) => names.get(id) ?? `Contact ${id}`,
      openChat: (id) => openChat(id), pickYear: (yy) => showOverview(yy),
    }));
    if (year !== null) $("wrapped-year")?.focus();
  } catch (e) {
    showProblem("overview-view", e);
  }
}

async function showAnalysis() {
  showView("analysis");
  try {
    await analysisView($("analysis-view"), { api, stream, chatId: null, chatTitle, streams: state.viewStreams });
  } catch (e) {
    showProblem("analysis-view", e);
  }
}

$("overview-open").addEventListener("click", () => showOverview());
$("analysis-open").addEventListener("click", () => showAnalysis());

async function openConversation(conversationId) {
  // The conversation's chat, opened at its first message.
  const conv = await (await api(`/api/conversations/${conversationId}`)).json();
  const msgs = await (await api(`/api/conversations/${conversationId}/messages?limit=500`)).json();
  const first = msgs.reduce((a, m) => (!a || m.timestamp < a.timestamp ? m : a), null);
  await openChat(conv.chat_id, first?.guid ?? null);
}

async function showChatbot() {
  showView("ai");
  try {
    await chatbotView($("ai-view"), {
      api, chats: state.chats, chatId: state.chatId,
      openAt: (chatId, guid) => openChat(chatId, guid), openConversation,
    });
  } catch (e) {
    showProblem("ai-view", e);
  }
}

$("ai-open").addEventListener("click", () => showChatbot());

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
    where.textContent = `${chat ? chat.title : "Chat " + m.chat_id} · ${who} · ${localTime(m.timestamp)}`;
    if (m.matched) where.textContent += ` · ${m.matched.join(" + ")}`;
    button.dataset.score = String(m.score ?? "");
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
  const mode = $("search-mode").value;
  if (state.view !== "messages") showView("messages");
  const box = $("search-results");
  box.hidden = false;
  // data-mode names the mode of the results on show: set once they are, not when asked
  // (a reader of the list would otherwise take the last search's results for this one's).
  delete box.dataset.mode;
  box.setAttribute("aria-busy", "true");
  document.body.classList.add("chat-open");
  try {
    await runSearch(`/api/search?limit=${mode === "text" ? 50 : 20}&mode=${mode}&q=${encodeURIComponent(q)}`, false);
    box.dataset.mode = mode;
  } catch (e) {
    const li = document.createElement("li");
    li.className = "error";
    li.setAttribute("role", "alert");
    li.textContent = e.message;
    $("results").replaceChildren(li);
    $("results-more").hidden = true;
    box.dataset.mode = mode;
  }
  box.removeAttribute("aria-busy");
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
  if (lastIndex) {
    rows.push(["Search index", `${lastIndex.items} items · ${lastIndex.building ? `building ${Math.round(100 * (lastIndex.progress ?? 0))}%` : "ready"}${lastIndex.pending ? ` · ${lastIndex.pending} pending` : ""}`]);
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
let lastIndex = null;
$("health-toggle").addEventListener("click", async () => {
  const panel = $("health");
  panel.hidden = !panel.hidden;
  $("health-toggle").setAttribute("aria-expanded", String(!panel.hidden));
  state.metricsStream?.close();
  if (panel.hidden) return;
  lastHealth = await (await api("/api/health")).json();
  lastIndex = await api("/api/index/status").then((r) => r.json()).catch(() => null);
  renderHealth(lastHealth, await api("/api/metrics").then((r) => r.json()).catch(() => null));
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
  if (!state.listStream || state.listStream.readyState === EventSource.CLOSED) watchChats();
}

// The chat list's stream opens while the sign-in is checked, not after (first load); a
// signed-out check closes it again.
watchChats();
(async () => {
  const response = await fetch("/api/chats?limit=1", { credentials: "same-origin" });
  if (response.ok) start(); else showSignIn();
})();
