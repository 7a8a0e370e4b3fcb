// Conversations with their analyses and commitments, and analysis runs with live progress
// (CONTRACT.md "Analysis"; progress from the queue stream, filtered by run_id in the daemon).
import { localTime } from "/static/render.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const when = (iso) => (iso ? localTime(iso) : "–");

/** An analysis result (any JSON the pass's schema allows) as nested definition lists. */
function resultView(value) {
  if (value === null || value === undefined) return el("span", "muted", "–");
  if (Array.isArray(value)) {
    if (!value.length) return el("span", "muted", "none");
    const ul = el("ul", "result-list");
    for (const v of value) { const li = el("li"); li.append(resultView(v)); ul.append(li); }
    return ul;
  }
  if (typeof value === "object") {
    const dl = el("dl", "analysis-result");
    for (const [k, v] of Object.entries(value)) {
      const dd = el("dd");
      dd.append(resultView(v));
      dl.append(el("dt", "", k.replaceAll("_", " ")), dd);
    }
    return dl;
  }
  return el("span", "", String(value));
}

function commitmentList(items) {
  const ul = el("ul", "commitments");
  for (const c of items) {
    const li = el("li", `commitment ${c.status}`);
    li.dataset.commitmentId = String(c.id);
    li.dataset.conversationId = String(c.conversation_id);
    li.append(el("span", "badge", c.status), el("span", "", ` ${c.who ? c.who + ": " : ""}${c.what}`));
    if (c.due) li.append(el("span", "muted", ` · due ${c.due}`));
    ul.append(li);
  }
  return ul;
}

/** The open chat's conversations (newest first, paged) and its commitments. */
export async function conversationsView(box, chatId, { api, nextLink, openAt }) {
  box.replaceChildren(el("p", "muted", "Loading…"));
  const [convResponse, commitments] = await Promise.all([
    api(`/api/conversations?chat_id=${chatId}&limit=20`),
    api(`/api/commitments?chat_id=${chatId}&limit=100`).then((r) => r.json()),
  ]);
  const head = el("section", "chart-block");
  head.append(el("h3", "", "Commitments"));
  head.append(commitments.length ? commitmentList(commitments) : el("p", "muted", "No commitments found yet."));
  const list = el("ol", "conversations");
  const more = el("button", "", "Older conversations");
  more.type = "button";
  const section = el("section", "chart-block");
  section.append(el("h3", "", "Conversations"), list, more);
  box.replaceChildren(head, section);

  const add = async (response) => {
    const items = await response.json();
    const next = nextLink(response);
    more.hidden = !next;
    more.onclick = next ? async () => add(await api(next)) : null;
    for (const c of items) list.append(conversationItem(c, { api, openAt }));
    if (!list.children.length) list.append(el("li", "muted", "No conversations yet."));
  };
  await add(convResponse);
}

function conversationItem(c, { api, openAt }) {
  const li = el("li");
  li.dataset.conversationId = String(c.id);
  const details = el("details", "conversation");
  const summary = el("summary");
  summary.textContent = `${when(c.start_time)} · ${c.message_count} messages · ${c.sealed ? "finished" : "in progress"}`;
  const body = el("div", "conversation-body");
  details.append(summary, body);
  details.addEventListener("toggle", async () => {
    if (!details.open || body.dataset.loaded) return;
    body.dataset.loaded = "1";
    const analyses = await (await api(`/api/conversations/${c.id}/analyses`)).json();
    const open = el("button", "", "Open in chat");
    open.type = "button";
    open.addEventListener("click", async () => {
      const msgs = await (await api(`/api/conversations/${c.id}/messages?limit=500`)).json();
      const first = msgs.reduce((a, m) => (!a || m.timestamp < a.timestamp ? m : a), null);
      if (first) openAt(c.chat_id, first.guid);
    });
    body.replaceChildren(open);
    if (!analyses.length) body.append(el("p", "muted", "Not analysed yet."));
    for (const a of analyses) {
      const art = el("article", "analysis");
      art.dataset.analysisId = String(a.id);
      art.dataset.pass = a.pass;
      const u = a.usage;
      art.append(el("h4", "", `${a.pass} v${a.pass_version}`),
        el("p", "muted", `${a.model || "model?"} · ${when(a.created_at)}${u ? ` · ${u.prompt_tokens + u.completion_tokens} tokens` : ""}${u?.cost != null ? ` · $${u.cost.toFixed(4)}` : ""}`),
        resultView(a.result));
      body.append(art);
    }
  });
  li.append(details);
  return li;
}

// --- runs -----------------------------------------------------------------------------------
function progressRow(run) {
  const li = el("li", "run");
  li.dataset.runId = run.run_id;
  li.dataset.passes = JSON.stringify(run.passes || []);
  const label = el("span", "run-label");
  const bar = el("progress");
  bar.max = 100;
  const id = `run-${run.run_id}`;
  bar.id = id;
  label.id = `${id}-label`;
  bar.setAttribute("aria-labelledby", label.id);
  li.append(label, bar);
  updateRow(li, run);
  return li;
}

function updateRow(li, run) {
  const pct = run.total ? Math.round((100 * (run.success + run.failed)) / run.total) : 100;
  li.querySelector("progress").value = pct;
  li.dataset.status = run.status || (run.is_complete ? "complete" : "running");
  li.dataset.done = String(run.success + run.failed);
  li.dataset.total = String(run.total);
  const usage = run.usage ? ` · ${run.usage.prompt_tokens + run.usage.completion_tokens} tokens${run.usage.cost != null ? `, $${run.usage.cost.toFixed(4)}` : ""}` : "";
  li.querySelector(".run-label").textContent =
    `${(run.passes || []).join(", ") || "run"} · ${li.dataset.status} · ${run.success + run.failed}/${run.total}` +
    `${run.failed ? ` (${run.failed} failed)` : ""}${usage}`;
}

/** Status, coverage, a form to start a run, the runs with live progress, dead jobs. */
export async function analysisView(box, { api, stream, chatId, chatTitle, streams }) {
  box.replaceChildren(el("p", "muted", "Loading…"));
  const q = chatId ? `?chat_id=${chatId}` : "";
  const [status, passes, coverage, runs, dead] = await Promise.all([
    api("/api/analysis/status").then((r) => r.json()),
    api("/api/analysis/passes").then((r) => r.json()),
    api(`/api/analysis/coverage${q}`).then((r) => r.json()),
    api("/api/analysis/runs?limit=10").then((r) => r.json()),
    api("/api/analysis/jobs?state=dead&limit=20").then((r) => r.json()),
  ]);
  const top = el("section", "chart-block");
  top.append(el("h3", "", "Analysis"), el("p", "", `Engine: ${status.state}${status.message ? ` (${status.message})` : ""} · model ${status.model || "none"} · jobs pending ${status.jobs.pending}, running ${status.jobs.running}, done ${status.jobs.done}, dead ${status.jobs.dead}`));

  const cov = el("table", "coverage");
  cov.append(el("caption", "", chatId ? `Coverage in ${chatTitle(chatId)}` : "Coverage"));
  const hr = el("tr");
  for (const h of ["Pass", "Analysed", "Missing", "Queued", "Dead", "Done"]) hr.append(el("th", "", h));
  cov.append(hr);
  for (const p of coverage.passes) {
    const tr = el("tr");
    tr.dataset.pass = p.pass;
    const bar = el("progress");
    bar.max = 100; bar.value = p.percentage;
    bar.setAttribute("aria-label", `${p.pass}: ${p.percentage}% analysed`);
    const td = el("td"); td.append(bar, el("span", "muted", ` ${Math.round(p.percentage)}%`));
    tr.append(el("td", "", p.pass), el("td", "", String(p.analysed)), el("td", "", String(p.missing)),
      el("td", "", String(p.queued)), el("td", "", String(p.dead)), td);
    cov.append(tr);
  }

  const form = el("form", "run-form");
  form.id = "run-form";
  const fs = el("fieldset");
  fs.append(el("legend", "", "Passes to run"));
  for (const p of passes.filter((x) => x.enabled && x.trigger === "sealed")) {
    const lab = el("label");
    const box2 = el("input");
    box2.type = "checkbox"; box2.name = "pass"; box2.value = p.name; box2.checked = true;
    lab.append(box2, ` ${p.name}`);
    fs.append(lab);
  }
  const limLabel = el("label", "", "At most ");
  const lim = el("input");
  lim.type = "number"; lim.min = "1"; lim.max = "10000"; lim.value = "20"; lim.name = "limit";
  limLabel.append(lim, " conversations");
  const go = el("button", "", chatId ? `Analyse ${chatTitle(chatId)}` : "Analyse all chats");
  go.type = "submit";
  const err = el("p", "error");
  err.setAttribute("role", "alert");
  form.append(fs, limLabel, go, err);

  const runList = el("ol", "runs");
  runList.id = "runs";
  runList.setAttribute("aria-live", "polite");
  for (const r of runs) runList.append(progressRow(r));

  const follow = (row, runId) => {
    const s = stream(`/api/analysis/streaming/queue/stream?run_id=${encodeURIComponent(runId)}&start_id=0`, {
      analysis_completed: (e) => updateRow(row, { ...e.data, passes: JSON.parse(row.dataset.passes || "[]"), status: "running" }),
      run_complete: async (e) => {
        s.close();
        updateRow(row, { ...e.data, passes: JSON.parse(row.dataset.passes || "[]"), status: "complete" });
        try { updateRow(row, await (await api(`/api/analysis/runs/${encodeURIComponent(runId)}`)).json()); } catch { /* keep */ }
      },
    });
    streams.add(s);
  };
  for (const r of runs) if (r.status === "running") follow(runList.querySelector(`[data-run-id="${CSS.escape(r.run_id)}"]`), r.run_id);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    err.textContent = "";
    const chosen = [...form.querySelectorAll('input[name="pass"]:checked')].map((i) => i.value);
    const body = { passes: chosen, limit: Number(lim.value) || undefined };
    if (chatId) body.chat_ids = [chatId];
    try {
      const run = await (await api("/api/analysis/runs", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      })).json();
      const row = progressRow({ passes: chosen, ...run });
      runList.prepend(row);
      if (run.status === "running") follow(row, run.run_id);
    } catch (e) {
      err.textContent = e.message;
    }
  });

  const deadBox = el("section", "chart-block");
  deadBox.append(el("h3", "", "Failed jobs"));
  if (!dead.length) deadBox.append(el("p", "muted", "None."));
  const deadList = el("ul");
  for (const j of dead) {
    const li = el("li");
    li.dataset.jobId = String(j.id);
    const retry = el("button", "", "Retry");
    retry.type = "button";
    retry.setAttribute("aria-label", `Retry job ${j.id}`);
    retry.addEventListener("click", async () => {
      await api(`/api/analysis/jobs/${j.id}/retry`, { method: "POST" });
      li.remove();
    });
    li.append(el("span", "", `${j.pass} · conversation ${j.conversation_id} · ${j.attempts} attempts `), retry);
    deadList.append(li);
  }
  deadBox.append(deadList);
  const runsBox = el("section", "chart-block");
  runsBox.append(el("h3", "", "Runs"), form, runList);
  top.append(cov);
  box.replaceChildren(top, runsBox, deadBox);
}
