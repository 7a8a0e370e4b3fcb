// SVG charts drawn here, no library: stacked bars over time, a week-by-hour heatmap and
// labelled horizontal bars. Every mark carries its numbers as data-* attributes and a <title>
// (a tooltip, and what a screen reader says), so what is drawn can be checked against the
// route that answered. Colours come from CSS classes, so light and dark themes both apply.
const NS = "http://www.w3.org/2000/svg";
export const DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

function s(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function frame(width, height, label, className) {
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: `chart ${className}`,
    preserveAspectRatio: "xMinYMin meet",
  });
  svg.append(s("title", {}, label));
  return svg;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// --- volume over time --------------------------------------------------------------------------
function addDays(iso, n) {
  const d = new Date(iso + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

function nextMonth(key) {
  let [y, m] = key.split("-").map(Number);
  m += 1;
  if (m > 12) { m = 1; y += 1; }
  return `${y}-${String(m).padStart(2, "0")}`;
}

/** by_day -> buckets with the empty ones in between: days for a span up to 92 days, else
 * months, else (over 15 years) years. Each bucket: {key, sent, received}. */
export function buckets(byDay) {
  if (!byDay.length) return { unit: "day", items: [] };
  const first = byDay[0].date, last = byDay[byDay.length - 1].date;
  const spanDays = (Date.parse(last) - Date.parse(first)) / 86400000;
  const unit = spanDays <= 92 ? "day" : spanDays <= 15 * 366 ? "month" : "year";
  const keyOf = (date) => (unit === "day" ? date : unit === "month" ? date.slice(0, 7) : date.slice(0, 4));
  const step = (k) => (unit === "day" ? addDays(k, 1) : unit === "month" ? nextMonth(k) : String(Number(k) + 1));
  const sums = new Map();
  for (const d of byDay) {
    const k = keyOf(d.date);
    const b = sums.get(k) || { sent: 0, received: 0 };
    b.sent += d.sent; b.received += d.received;
    sums.set(k, b);
  }
  const items = [];
  for (let k = keyOf(first), end = keyOf(last); ; k = step(k)) {
    const b = sums.get(k) || { sent: 0, received: 0 };
    items.push({ key: k, sent: b.sent, received: b.received });
    if (k === end || items.length > 5000) break;
  }
  return { unit, items };
}

export function volumeChart(byDay, label) {
  const { unit, items } = buckets(byDay);
  const W = 720, H = 220, L = 40, B = 24, T = 8;
  const svg = frame(W, H, `${label}, messages per ${unit}`, "volume");
  svg.dataset.unit = unit;
  const max = niceMax(Math.max(0, ...items.map((b) => b.sent + b.received)));
  const plotW = W - L - 8, plotH = H - B - T;
  const bw = plotW / Math.max(1, items.length);
  const y = (v) => T + plotH - (v / max) * plotH;
  for (const v of [0, max / 2, max]) {
    svg.append(s("line", { x1: L, x2: W - 8, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" }, String(Math.round(v))));
  }
  const labelEvery = Math.max(1, Math.ceil(items.length / 8));
  items.forEach((b, i) => {
    const x = L + i * bw;
    const g = s("g", { class: "bar", "data-key": b.key, "data-sent": b.sent, "data-received": b.received });
    g.append(s("title", {}, `${b.key}: ${b.sent} sent, ${b.received} received`));
    const gap = bw > 4 ? 1 : 0;
    if (b.received) g.append(s("rect", { x: x + gap / 2, width: Math.max(0.5, bw - gap), y: y(b.received), height: y(0) - y(b.received), class: "received" }));
    if (b.sent) g.append(s("rect", { x: x + gap / 2, width: Math.max(0.5, bw - gap), y: y(b.sent + b.received), height: y(b.received) - y(b.sent + b.received), class: "sent" }));
    svg.append(g);
    if (i % labelEvery === 0) {
      svg.append(s("text", { x: x + bw / 2, y: H - 6, "text-anchor": "middle", class: "axis" }, b.key));
    }
  });
  return svg;
}

// --- week by hour ---------------------------------------------------------------------------
export function heatmap(hourOfWeek, label) {
  const W = 720, L = 84, T = 18, cell = (W - L - 4) / 24, H = T + cell * 7 + 4;
  const svg = frame(W, H, `${label}, messages by weekday and hour`, "heatmap");
  const max = Math.max(1, ...hourOfWeek.flat());
  for (let h = 0; h < 24; h += 3) {
    svg.append(s("text", { x: L + h * cell + cell / 2, y: 12, "text-anchor": "middle", class: "axis" }, `${h}h`));
  }
  hourOfWeek.forEach((row, d) => {
    svg.append(s("text", { x: L - 6, y: T + d * cell + cell * 0.65, "text-anchor": "end", class: "axis" }, DAYS[d]));
    row.forEach((count, h) => {
      const r = s("rect", {
        x: L + h * cell + 1, y: T + d * cell + 1, width: cell - 2, height: cell - 2, rx: 3,
        class: count ? "cell" : "cell empty", "data-day": d, "data-hour": h, "data-count": count,
        "fill-opacity": count ? (0.15 + 0.85 * (count / max)).toFixed(3) : 1,
      });
      r.append(s("title", {}, `${DAYS[d]} ${String(h).padStart(2, "0")}:00: ${count} messages`));
      svg.append(r);
    });
  });
  return svg;
}

// --- labelled horizontal bars -------------------------------------------------------------
/** rows: [{label, value, text?, className?, data?: {name: value}}]; value 0 draws no bar. */
export function hbars(rows, label, className = "hbars") {
  const W = 720, L = 190, R = 90, row = 26;
  const H = Math.max(1, rows.length) * row + 6;
  const svg = frame(W, H, label, className);
  const max = Math.max(0, ...rows.map((r) => r.value ?? 0)) || 1;
  rows.forEach((r, i) => {
    const yTop = 3 + i * row;
    const g = s("g", { class: "hbar" });
    for (const [k, v] of Object.entries(r.data || {})) g.setAttribute(`data-${k}`, v ?? "");
    const text = r.text ?? String(r.value ?? "–");
    g.append(s("title", {}, `${r.label}: ${text}`));
    g.append(s("text", { x: L - 8, y: yTop + row * 0.62, "text-anchor": "end", class: "label" }, r.label));
    const w = ((r.value ?? 0) / max) * (W - L - R);
    g.append(s("rect", { x: L, y: yTop + 3, width: Math.max(0, w), height: row - 8, rx: 3, class: r.className || "sent" }));
    g.append(s("text", { x: L + w + 6, y: yTop + row * 0.62, class: "value" }, text));
    svg.append(g);
  });
  return svg;
}
