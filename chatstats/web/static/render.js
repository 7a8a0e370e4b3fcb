// Pure rendering helpers: Message -> DOM as Messages.app shows it. No network here.
const TAPBACKS = {
  loved: "\u2764\ufe0f", liked: "\ud83d\udc4d", disliked: "\ud83d\udc4e", laughed: "\ud83d\ude02",
  emphasized: "\u203c\ufe0f", questioned: "\u2753", sticker: "\ud83c\udff7\ufe0f",
};
const SYSTEM_TEXT = {
  participant_added: "added someone to the conversation",
  participant_removed: "removed someone from the conversation",
  participant_left: "left the conversation",
  photo_changed: "changed the group photo",
  photo_removed: "removed the group photo",
  location_sharing: "shared location",
  audio_kept: "kept an audio message",
  shareplay: "started SharePlay",
  group_event: "changed the group",
  system: "system event",
};

// One formatter for every time shown: Date.toLocaleString builds a new one per call, which
// dominated drawing a long chat list or a page of messages.
const TIME = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "2-digit", second: "2-digit",
});
export function localTime(value) {
  return TIME.format(value instanceof Date ? value : new Date(value));
}

export function personName(p) {
  return p ? (p.name || p.identifier || "Unknown") : "Unknown";
}

function who(m) {
  return m.is_from_me ? "You" : personName(m.sender);
}

export function sortChats(chats) {
  return chats.sort((a, b) => {
    if (a.last_message_time !== b.last_message_time) {
      if (a.last_message_time === null) return 1;
      if (b.last_message_time === null) return -1;
      return a.last_message_time < b.last_message_time ? 1 : -1;
    }
    return b.id - a.id;
  });
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderMessage(m, byGuid, isGroup) {
  const li = el("li");
  li.dataset.messageGuid = m.guid;
  li.dataset.messageId = String(m.id);
  li.tabIndex = -1;
  const time = new Date(m.timestamp);
  if (m.kind !== "message") {
    li.className = "system";
    li.textContent = m.kind === "renamed"
      ? `${who(m)} named the conversation \u201c${m.group_title ?? ""}\u201d`
      : `${who(m)} ${SYSTEM_TEXT[m.kind] || m.kind}`;
    return li;
  }
  li.className = m.is_from_me ? "msg me" : "msg them";
  if (isGroup && !m.is_from_me) li.append(el("span", "sender", personName(m.sender)));
  if (m.reply_to_guid) {
    const parent = byGuid.get(m.reply_to_guid);
    const quote = el("span", "reply-to",
      parent ? `${who(parent)}: ${parent.unsent ? "(unsent)" : (parent.text || "")}` : "Reply");
    quote.setAttribute("aria-label", "In reply to " + quote.textContent);
    li.append(quote);
  }
  const bubble = el("div", "bubble");
  if (m.unsent) {
    bubble.classList.add("unsent");
    bubble.textContent = `${who(m)} unsent a message`;
  } else {
    if (m.text) bubble.append(el("span", "text", m.text));
    for (const a of m.attachments || []) {
      bubble.append(el("span", "attachment", `\ud83d\udcce ${a.transfer_name || a.filename || a.mime_type || "attachment"}`));
    }
  }
  if (m.reactions?.length) {
    const r = el("span", "reactions");
    const label = m.reactions.map((x) => `${x.is_from_me ? "You" : personName(x.sender)} ${x.type}`).join(", ");
    r.setAttribute("aria-label", "Reactions: " + label);
    r.textContent = m.reactions.map((x) => x.emoji || TAPBACKS[x.type] || x.type).join("");
    bubble.append(r);
  }
  li.append(bubble);
  const meta = el("time", "meta", localTime(time));
  meta.dateTime = m.timestamp;
  if (m.edited && !m.unsent) meta.textContent += " \u00b7 Edited";
  li.append(meta);
  return li;
}
