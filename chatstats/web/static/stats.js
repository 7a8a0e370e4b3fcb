// Statistics views: a chat's or contact's figures (/api/stats/chats|contacts/{id}), the
// overview (/api/stats/overview) and the year in messages (/api/stats/wrapped), as charts.
import { duration, heatmap, hbars, volumeChart } from "/static/charts.js";

const TYPES = ["loved", "liked", "disliked", "laughed", "emphasized", "questioned", "emoji", "sticker"];

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function figures(pairs) {
  const dl = el("dl", "figures");
  for (const [k, v] of pairs) {
    const box = el("div");
    box.append(el("dt", "", k), el("dd", "", v === null || v === undefined ? "–" : String(v)));
    dl.append(box);
  }
  return dl;
}

function block(title, ...children) {
  const section = el("section", "chart-block");
  section.append(el("h3", "", title), ...children);
  return section;
}

function day(iso) {
  return iso ? new Date(iso).toLocaleDateString() : "–";
}

/** A chat's or contact's statistics. names: contact_id -> name (for the by-sender chart). */
export function statsView(data, label, names) {
  const frag = document.createDocumentFragment();
  const c = data.conversations, st = data.streaks;
  frag.append(figures([
    ["Messages", data.messages], ["Sent", data.sent], ["Received", data.received],
    ["First", day(data.first_message_time)], ["Last", day(data.last_message_time)],
    ["Conversations", c.count], ["Started by you", c.started_by_me],
    ["Started by them", c.started_by_them], ["Median length", c.median_messages ?? "–"],
    ["Longest streak", `${st.longest_days} days`], ["Current streak", `${st.current_days} days`],
  ]));
  const legend = el("p", "legend");
  legend.innerHTML = '<span class="key sent"></span> sent <span class="key received"></span> received';
  frag.append(block("Volume over time", legend, volumeChart(data.by_day, label)));
  frag.append(block("Week by hour", heatmap(data.hour_of_week, label)));
  const rt = data.response_times;
  const rtRows = [
    ["You, median", rt.me.median_s, rt.me.n, "sent"], ["You, 90th percentile", rt.me.p90_s, rt.me.n, "sent"],
    ["Them, median", rt.them.median_s, rt.them.n, "received"], ["Them, 90th percentile", rt.them.p90_s, rt.them.n, "received"],
  ].map(([l, v, n, cls]) => ({
    label: l, value: v ?? 0, text: `${duration(v)} (${n} replies)`, className: cls,
    data: { seconds: v ?? "", n },
  }));
  frag.append(block("Response times", hbars(rtRows, `${label}, response times`, "chart-responses")));
  const given = data.reactions.given, received = data.reactions.received;
  const types = TYPES.filter((t) => given[t] || received[t])
    .concat(Object.keys({ ...given, ...received }).filter((t) => !TYPES.includes(t)));
  if (types.length) {
    const rows = types.flatMap((t) => [
      { label: `${t}, by you`, value: given[t] || 0, className: "sent", data: { type: t, side: "given", count: given[t] || 0 } },
      { label: `${t}, by them`, value: received[t] || 0, className: "received", data: { type: t, side: "received", count: received[t] || 0 } },
    ]);
    frag.append(block("Reactions", hbars(rows, `${label}, reactions`, "chart-reactions")));
  } else {
    frag.append(block("Reactions", el("p", "muted", "No reactions.")));
  }
  const senders = data.by_sender.map((b) => ({
    label: b.is_from_me ? "You" : (names.get(b.contact_id) || "Unknown"), value: b.messages,
    text: `${b.messages} messages, ${b.words} words`, className: b.is_from_me ? "sent" : "received",
    data: { contact: b.contact_id ?? "me", messages: b.messages },
  }));
  if (senders.length) frag.append(block("By sender", hbars(senders, `${label}, messages by sender`, "chart-senders")));
  frag.append(el("p", "muted", `Days and hours in ${data.timezone}.`));
  return frag;
}

/** The overview and, under it, the year in messages with a year picker. */
export function overviewView(ov, wrapped, { chatTitle, contactName, openChat, pickYear }) {
  const frag = document.createDocumentFragment();
  frag.append(figures([
    ["Messages", ov.messages], ["Sent", ov.sent], ["Received", ov.received], ["Chats", ov.chats],
    ["Contacts", ov.contacts], ["First", day(ov.first_message_time)], ["Last", day(ov.last_message_time)],
  ]));
  const years = ov.by_year.flatMap((y) => [
    { label: `${y.year}, sent`, value: y.sent, className: "sent", data: { year: y.year, side: "sent", count: y.sent } },
    { label: `${y.year}, received`, value: y.received, className: "received", data: { year: y.year, side: "received", count: y.received } },
  ]);
  frag.append(block("By year", hbars(years, "Messages by year", "chart-years")));
  frag.append(block("Top chats", topChats(ov.top_chats, chatTitle, openChat)));

  const head = el("div", "year-head");
  const h = el("h3", "", "The year in messages");
  const pick = el("select");
  pick.id = "wrapped-year";
  const lab = el("label", "visually-hidden", "Year");
  lab.htmlFor = "wrapped-year";
  const choices = ov.by_year.map((y) => y.year).reverse();
  if (!choices.includes(wrapped.year)) choices.unshift(wrapped.year);
  for (const y of choices) {
    const o = el("option", "", String(y));
    o.value = String(y);
    if (y === wrapped.year) o.selected = true;
    pick.append(o);
  }
  pick.addEventListener("change", () => pickYear(Number(pick.value)));
  head.append(h, lab, pick);
  const w = el("section", "chart-block wrapped");
  w.id = "wrapped";
  w.dataset.year = String(wrapped.year);
  w.append(head);
  const prev = wrapped.previous_year;
  w.append(figures([
    ["Messages", wrapped.messages], ["Sent", wrapped.sent], ["Received", wrapped.received],
    ["Chats", wrapped.chats], ["People", wrapped.contacts],
    [`vs ${prev.year}`, prev.messages ? `${wrapped.messages >= prev.messages ? "+" : ""}${wrapped.messages - prev.messages}` : "–"],
    ["Busiest day", wrapped.busiest_day ? `${wrapped.busiest_day.date} (${wrapped.busiest_day.sent + wrapped.busiest_day.received})` : "–"],
    ["Top hour", wrapped.top_hour === null ? "–" : `${wrapped.top_hour}:00`],
    ["Fastest responder", wrapped.fastest_responder ? `${contactName(wrapped.fastest_responder.contact_id)} (${duration(wrapped.fastest_responder.median_s)})` : "–"],
    ["Your median reply", duration(wrapped.response_times.me.median_s)],
    ["Longest streak", `${wrapped.streaks.longest_days} days`],
  ]));
  if (wrapped.top_chats.length) w.append(el("h4", "", "Top chats"), topChats(wrapped.top_chats, chatTitle, openChat));
  if (wrapped.top_people.length) {
    const rows = wrapped.top_people.map((p) => ({
      label: contactName(p.contact_id), value: p.messages, className: "received", data: { contact: p.contact_id, count: p.messages },
    }));
    w.append(el("h4", "", "Top people"), hbars(rows, `Top people of ${wrapped.year}`, "chart-people"));
  }
  frag.append(w);
  return frag;
}

function topChats(rows, chatTitle, openChat) {
  const ol = el("ol", "top-chats");
  const max = Math.max(1, ...rows.map((r) => r.messages));
  for (const r of rows) {
    const li = el("li");
    const b = el("button", "link");
    b.type = "button";
    b.dataset.openChat = String(r.chat_id);
    b.dataset.messages = String(r.messages);
    const name = el("span", "", chatTitle(r.chat_id, r.title));
    const meter = el("span", "meter");
    meter.style.setProperty("--w", `${(100 * r.messages) / max}%`);
    b.append(name, meter, el("span", "value", String(r.messages)));
    b.setAttribute("aria-label", `${name.textContent}: ${r.messages} messages`);
    b.addEventListener("click", () => openChat(r.chat_id));
    li.append(b);
    ol.append(li);
  }
  return ol;
}
