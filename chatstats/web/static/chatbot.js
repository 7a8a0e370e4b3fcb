// The AI chat (CONTRACT.md "AI chatbot"): threads, a composer, answers streamed from the
// turn's SSE (turn_started, tool_call, tool_result, delta, then message or error), citations
// that open the cited messages in their chat, and each thread's token and cost totals.
//
// A turn is a POST whose answer is an event stream, which EventSource cannot send, so it is
// read here with fetch and a small SSE parser; the session cookie rides along as everywhere.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const TOOL_LABELS = {
  search_messages: "Searching messages", get_conversation: "Reading a conversation",
  list_commitments: "Listing commitments", get_analyses: "Reading analyses",
  get_stats: "Reading statistics", create_document: "Writing a document",
};

export function money(cost) {
  if (cost === null || cost === undefined) return "no price";
  return `$${cost < 0.01 ? cost.toFixed(4) : cost.toFixed(2)}`;
}

/** Yields {event, data} from an SSE body as it arrives (data parsed as JSON). */
export async function* readSSE(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length || event === "heartbeat") continue;
      let parsed;
      try { parsed = JSON.parse(data.join("\n")); } catch { parsed = data.join("\n"); }
      yield { event, data: parsed };
    }
  }
}

/**
 * The AI chat view in `box`. ctx: {api, chats (Map id -> chat), openAt(chatId, guid),
 * openConversation(conversationId)}. Returns nothing; the view owns its DOM under `box`.
 */
export async function chatbotView(box, ctx) {
  const { api } = ctx;
  box.replaceChildren(el("p", "muted", "Loading…"));
  const [threads, status] = await Promise.all([
    api("/api/chatbot/threads?limit=100").then((r) => r.json()),
    api("/api/analysis/status").then((r) => r.json()).catch(() => null),
  ]);
  const view = { current: null, busy: false };

  // --- the thread list and the new-thread form ---
  const side = el("section", "ai-threads");
  side.setAttribute("aria-labelledby", "ai-threads-title");
  const h = el("h3", "", "Threads");
  h.id = "ai-threads-title";
  const form = el("form", "ai-new");
  form.id = "ai-new";
  const titleLabel = el("label", "", "Title");
  titleLabel.htmlFor = "ai-title";
  const title = el("input");
  title.id = "ai-title"; title.maxLength = 200; title.placeholder = "Optional";
  const scopeLabel = el("label", "", "About");
  scopeLabel.htmlFor = "ai-scope";
  const scope = el("select");
  scope.id = "ai-scope";
  scope.append(Object.assign(el("option", "", "All chats"), { value: "" }));
  const recent = [...ctx.chats.values()]
    .filter((c) => c.last_message_time)
    .sort((a, b) => (a.last_message_time < b.last_message_time ? 1 : -1))
    .slice(0, 50);
  for (const c of recent) scope.append(Object.assign(el("option", "", c.title), { value: String(c.id) }));
  if (ctx.chatId !== null && ctx.chats.has(ctx.chatId)) scope.value = String(ctx.chatId);
  const create = el("button", "", "New thread");
  create.type = "submit";
  const formError = el("p", "error");
  formError.setAttribute("role", "alert");
  form.append(titleLabel, title, scopeLabel, scope, create, formError);
  const list = el("ul", "ai-thread-list");
  list.id = "ai-thread-list";
  side.append(h, form, list);

  // --- the open thread ---
  const main = el("section", "ai-thread");
  main.setAttribute("aria-labelledby", "ai-thread-title");
  const head = el("header", "ai-head");
  const threadTitle = el("h3", "", "No thread open");
  threadTitle.id = "ai-thread-title";
  const totals = el("p", "muted ai-totals");
  totals.id = "ai-totals";
  totals.setAttribute("aria-live", "polite");
  head.append(threadTitle, totals);
  const notice = el("p", "ai-notice");
  notice.id = "ai-notice";
  notice.setAttribute("role", "status");
  const noModel = status && !status.model;
  if (noModel) {
    notice.classList.add("warning");
    notice.textContent = "No model is configured, so the AI chat cannot answer. Set CHATSTATS_LLM_MODEL "
      + "(and CHATSTATS_LLM_API_BASE for a local server) and restart the daemon.";
  }
  notice.hidden = !noModel;
  const log = el("ol", "ai-messages");
  log.id = "ai-messages";
  log.setAttribute("aria-live", "polite");
  log.setAttribute("aria-label", "Messages of the thread");
  const composer = el("form", "ai-composer");
  composer.id = "ai-composer";
  const inputLabel = el("label", "visually-hidden", "Message to the assistant");
  inputLabel.htmlFor = "ai-input";
  const input = el("textarea");
  input.id = "ai-input"; input.rows = 2; input.maxLength = 20000;
  input.placeholder = "Ask about your messages (Enter sends, Shift+Enter for a new line)";
  const send = el("button", "", "Send");
  send.type = "submit";
  send.id = "ai-send";
  composer.append(inputLabel, input, send);
  main.append(head, notice, log, composer);
  box.replaceChildren(side, main);

  const threadNodes = new Map();
  function threadItem(t) {
    let li = threadNodes.get(t.id);
    if (!li) {
      li = el("li");
      const b = el("button", "ai-thread-button");
      b.type = "button";
      b.dataset.threadId = String(t.id);
      b.append(el("span", "chat-title"), el("span", "chat-meta"));
      b.addEventListener("click", () => openThread(t.id));
      li.append(b);
      threadNodes.set(t.id, li);
    }
    const b = li.firstChild;
    b.children[0].textContent = t.title || `Thread ${t.id}`;
    b.children[1].textContent = `${t.message_count} messages · ${t.total_tokens} tokens · ${money(t.total_cost)}`;
    if (view.current?.id === t.id) b.setAttribute("aria-current", "true"); else b.removeAttribute("aria-current");
    return li;
  }
  function showThreads(items) {
    list.replaceChildren(...items.map(threadItem));
    if (!items.length) list.append(el("li", "muted", "No threads yet."));
  }
  function putThread(t) {
    const li = threadItem(t);
    if (list.firstChild !== li) list.prepend(li);
    list.querySelector("li.muted")?.remove();
    if (view.current?.id === t.id) {
      view.current = t;
      showTotals(t);
    }
  }
  function showTotals(t) {
    totals.dataset.totalTokens = String(t.total_tokens);
    totals.dataset.totalCost = t.total_cost === null ? "" : String(t.total_cost);
    totals.dataset.messageCount = String(t.message_count);
    totals.textContent = `${t.message_count} messages · ${t.total_tokens} tokens · ${money(t.total_cost)}`;
  }
  showThreads(threads);

  function scopeText(t) {
    const names = (t.contexts || []).map((c) => (c.chat_id ? ctx.chats.get(c.chat_id)?.title ?? `chat ${c.chat_id}`
      : `contact ${c.contact_id}`));
    return names.length ? `About ${names.join(", ")}` : "About all chats";
  }

  // --- messages ---
  function citationList(citations) {
    const ul = el("ul", "citations");
    ul.setAttribute("aria-label", "Cited messages");
    citations.forEach((c, i) => {
      const li = el("li");
      const b = el("button", "citation", `[${i + 1}]`);
      b.type = "button";
      if (c.message_guid) {
        b.dataset.messageGuid = c.message_guid;
        b.setAttribute("aria-label", `Open cited message ${i + 1} in its chat`);
        b.addEventListener("click", () => openCitation(c, b));
      } else if (c.conversation_id) {
        b.dataset.conversationId = String(c.conversation_id);
        b.textContent = `[${i + 1}] conversation`;
        b.setAttribute("aria-label", `Open cited conversation ${i + 1} in its chat`);
        b.addEventListener("click", () => ctx.openConversation(c.conversation_id));
      } else {
        return;
      }
      li.append(b);
      ul.append(li);
    });
    return ul;
  }

  async function openCitation(c, button) {
    const t = view.current;
    let chatId = c.chat_id ?? null;  // older answers stored citations without their chat
    if (chatId === null) {
      const chats = (t?.contexts || []).filter((x) => x.chat_id).map((x) => x.chat_id);
      if (chats.length === 1) chatId = chats[0];
    }
    if (chatId === null) {
      button.disabled = true;
      button.title = "The chat of this message is not known to the page";
      return;
    }
    await ctx.openAt(chatId, c.message_guid);
  }

  function messageNode(m) {
    const li = el("li", `ai-msg ${m.role === "user" ? "me" : "them"}`);
    li.dataset.threadMessageId = String(m.id ?? "");
    li.dataset.role = m.role;
    const who = el("span", "sender", m.role === "user" ? "You" : "Assistant");
    const bubble = el("div", "bubble");
    const text = el("span", "text", m.content || "");
    bubble.append(text);
    li.append(who, bubble);
    if (m.role === "assistant") {
      const steps = el("ul", "ai-steps");
      steps.setAttribute("aria-label", "Tools used");
      bubble.prepend(steps);
      if (m.status && m.status !== "complete") {
        li.dataset.status = m.status;
        bubble.append(el("span", "error", m.error_code ? `Stopped: ${m.error_code}` : `(${m.status})`));
      }
      if (m.citations?.length) bubble.append(citationList(m.citations));
      const meta = el("span", "meta");
      if (m.total_tokens !== undefined && m.total_tokens !== null) {
        meta.textContent = `${m.model || "model"} · ${m.total_tokens} tokens · ${money(m.cost)}${m.response_time_ms ? ` · ${(m.response_time_ms / 1000).toFixed(1)} s` : ""}`;
      }
      li.append(meta);
    }
    return li;
  }

  async function openThread(id) {
    if (view.busy) return;
    const [t, messages] = await Promise.all([
      api(`/api/chatbot/threads/${id}`).then((r) => r.json()),
      api(`/api/chatbot/threads/${id}/messages?limit=500`).then((r) => r.json()),
    ]);
    view.current = t;
    main.dataset.threadId = String(t.id);
    threadTitle.textContent = `${t.title || `Thread ${t.id}`} · ${scopeText(t)}`;
    showTotals(t);
    threadItem(t);
    markCurrent();
    log.replaceChildren(...messages.map(messageNode));
    log.lastElementChild?.scrollIntoView({ block: "end" });
    input.focus();
  }

  function markCurrent() {
    for (const li of threadNodes.values()) {
      const b = li.firstChild;
      if (view.current && b.dataset.threadId === String(view.current.id)) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.textContent = "";
    const body = { title: title.value.trim() || null };
    if (scope.value) body.contexts = [{ chat_id: Number(scope.value) }];
    try {
      const t = await (await api("/api/chatbot/threads", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      })).json();
      title.value = "";
      putThread(t);
      await openThread(t.id);
    } catch (e) {
      formError.textContent = e.message;
    }
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (!content || view.busy) return;
    if (!view.current) {
      // No thread open: start one about the chosen scope, titled by the question.
      const body = { title: content.slice(0, 80) };
      if (scope.value) body.contexts = [{ chat_id: Number(scope.value) }];
      try {
        const t = await (await api("/api/chatbot/threads", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        })).json();
        putThread(t);
        await openThread(t.id);
      } catch (e) {
        showNotice(e.message, true);
        return;
      }
    }
    input.value = "";
    await runTurn(view.current.id, content);
  });

  function showNotice(text, isError) {
    notice.hidden = false;
    notice.textContent = text;
    notice.classList.toggle("warning", Boolean(isError));
  }

  async function runTurn(threadId, content) {
    view.busy = true;
    send.disabled = true;
    composer.setAttribute("aria-busy", "true");
    const user = messageNode({ role: "user", content });
    const answer = messageNode({ role: "assistant", content: "" });
    answer.dataset.status = "streaming";
    answer.setAttribute("aria-busy", "true");
    log.append(user, answer);
    const text = answer.querySelector(".text");
    const steps = answer.querySelector(".ai-steps");
    const stepNodes = new Map();
    answer.scrollIntoView({ block: "end" });
    let ended = false;
    try {
      const response = await api(`/api/chatbot/threads/${threadId}/messages`, {
        method: "POST", headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ content }),
      });
      for await (const { event, data } of readSSE(response)) {
        if (view.current?.id !== threadId && event !== "message" && event !== "error") continue;
        if (event === "turn_started") {
          user.dataset.threadMessageId = String(data.user_message_id);
        } else if (event === "tool_call") {
          const li = el("li", "ai-step", `${TOOL_LABELS[data.name] || data.name}…`);
          li.dataset.tool = data.name;
          steps.append(li);
          stepNodes.set(data.id, li);
        } else if (event === "tool_result") {
          const li = stepNodes.get(data.id);
          if (li) {
            li.textContent = `${TOOL_LABELS[data.name] || data.name}: ${data.error ? `failed (${data.error})` : `${data.count} found`}`;
            li.dataset.count = String(data.count);
          }
        } else if (event === "delta") {
          text.textContent += data.text;
        } else if (event === "message") {
          ended = true;
          const node = messageNode(data);
          node.querySelector(".ai-steps").replaceWith(steps);
          answer.replaceWith(node);
          node.dataset.status = data.status || "complete";
          await refreshThread(threadId);
        } else if (event === "error") {
          ended = true;
          answer.dataset.status = "error";
          answer.dataset.errorCode = data.code;
          answer.removeAttribute("aria-busy");
          const err = el("span", "error", data.code === "llm_not_configured"
            ? "No model is configured: set CHATSTATS_LLM_MODEL and restart the daemon."
            : `The answer failed: ${data.message}`);
          err.setAttribute("role", "alert");
          answer.querySelector(".bubble").append(err);
          if (data.code === "llm_not_configured") {
            showNotice("No model is configured, so the AI chat cannot answer. Set CHATSTATS_LLM_MODEL "
              + "(and CHATSTATS_LLM_API_BASE for a local server) and restart the daemon.", true);
          }
          await refreshThread(threadId);
        }
      }
      if (!ended) throw new Error("the answer stream ended early");
    } catch (e) {
      answer.dataset.status = "error";
      answer.removeAttribute("aria-busy");
      const err = el("span", "error", `The answer failed: ${e.message}`);
      err.setAttribute("role", "alert");
      answer.querySelector(".bubble")?.append(err);
    } finally {
      view.busy = false;
      send.disabled = false;
      composer.removeAttribute("aria-busy");
      input.focus();
    }
  }

  async function refreshThread(threadId) {
    try {
      putThread(await (await api(`/api/chatbot/threads/${threadId}`)).json());
      markCurrent();
    } catch { /* the totals stay as they were */ }
  }
}
