// Anomalies page: the ranking from /api/anomalies (re-fetched after every mark) and the map
// from /api/anomalies/map drawn on a canvas. Marks are sent by app.js (button.mark, keys i/b).

const list = document.getElementById("ranking");
const status = document.getElementById("rank-status");
const filters = document.getElementById("rank-filters");
const more = document.getElementById("more");
const PAGE = 12;
let shown = PAGE;
let current = 0;

function query() {
  const params = new URLSearchParams(new FormData(filters));
  for (const [k, v] of [...params]) if (!v) params.delete(k);
  params.set("limit", String(shown));
  params.set("neighbours", "4");
  return params;
}

function item(r) {
  const li = document.getElementById("rank-item").content.firstElementChild.cloneNode(true);
  li.dataset.record = r.id;
  li.querySelectorAll("a.open").forEach((a) => { a.href = `/classifications/${r.id}`; });
  const img = li.querySelector("img.thumb");
  img.src = `/thumbs/${r.id}.jpg`;
  img.alt = r.file;
  li.querySelector(".name").textContent = r.file;
  li.querySelector(".scores").textContent =
    `${r.label} ${(100 * r.confidence).toFixed(0)}% · anomaly ${r.anomaly_score.toFixed(2)} · rank score ${r.score.toFixed(2)} · ${r.source}`;
  if (r.interesting !== null) {
    li.querySelectorAll("button.mark").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.interesting === String(r.interesting))));
    li.querySelector(".mark-status").textContent = r.interesting ? "marked interesting" : "marked not interesting";
    li.classList.add(r.interesting ? "interesting" : "boring");
  }
  li.querySelector(".neighbours").replaceChildren(...r.neighbours.map((n) => {
    const a = document.createElement("a");
    a.href = `/classifications/${n.id}`;
    a.title = `${n.file}: ${n.corrected ? `${n.corrected} (corrected)` : n.label}, distance ${n.distance.toFixed(2)}`;
    const t = document.createElement("img");
    t.src = `/thumbs/${n.id}.jpg`; t.alt = n.file; t.loading = "lazy"; t.width = 48; t.height = 48;
    a.append(t);
    const wrap = document.createElement("li"); wrap.append(a);
    return wrap;
  }));
  return li;
}

function setCurrent(i) {
  const items = [...list.children];
  if (!items.length) return;
  current = Math.max(0, Math.min(i, items.length - 1));
  items.forEach((li, j) => li.classList.toggle("current", j === current));
}

async function load() {
  const res = await fetch(`/api/anomalies?${query()}`);
  const data = await res.json();
  if (!res.ok) { status.textContent = data.error ? data.error.message : "could not load the ranking"; return; }
  list.replaceChildren(...data.items.map(item));
  status.textContent = `${data.total} image${data.total === 1 ? "" : "s"} · ${data.marked} marked (${data.interesting} interesting)`
    + (data.updating ? " · re-learning from the newest marks in the background" : "");
  more.hidden = data.items.length >= data.total;
  setCurrent(current);
}

filters.addEventListener("submit", (e) => { e.preventDefault(); shown = PAGE; current = 0; load(); loadMap(); });
more.addEventListener("click", () => { shown += PAGE; load(); });
list.addEventListener("marked", () => { load(); loadMap(); });
list.addEventListener("click", (e) => { const li = e.target.closest(".rank-item"); if (li) setCurrent([...list.children].indexOf(li)); });
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "j") setCurrent(current + 1);
  else if (e.key === "k") setCurrent(current - 1);
  else if (e.key === "o" && list.children[current]) window.location = `/classifications/${list.children[current].dataset.record}`;
  else return;
  e.preventDefault();
  list.children[current]?.scrollIntoView({ block: "nearest" });
});

// --- the map ---------------------------------------------------------------------------
const canvas = document.getElementById("map");
const tip = document.getElementById("map-tip");
const colourBy = document.getElementById("colour-by");
const key = document.getElementById("map-key");
const PALETTE = ["#7aa2ff", "#ffb454", "#7dffa8", "#ff7ab6", "#c792ea", "#59d9e8", "#f78c6c", "#e6e9f2"];
let points = [];

function scoreColour(s) {  // dark blue (typical) to yellow (unusual)
  const t = Math.max(0, Math.min(1, s ?? 0));
  return `hsl(${230 - 180 * t}, 90%, ${35 + 30 * t}%)`;
}

// Where a point sits: [0, 1] coordinates inside a margin, so that a few points (which the
// layout spreads to the corners) are drawn whole, away from the canvas edge.
function place(p, width, height) {
  const pad = Math.max(16, 0.08 * Math.min(width, height));
  return [pad + p.x * (width - 2 * pad), pad + p.y * (height - 2 * pad)];
}

function draw() {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const labels = [...new Set(points.map((p) => p.label))].sort();
  for (const p of points) {
    const [x, y] = place(p, width, height);
    ctx.beginPath();
    ctx.arc(x, y, p.interesting ? 5 : 3.5, 0, 2 * Math.PI);
    ctx.fillStyle = colourBy.value === "score" ? scoreColour(p.anomaly_score) : PALETTE[labels.indexOf(p.label) % PALETTE.length];
    ctx.fill();
    if (p.interesting !== null) { ctx.strokeStyle = p.interesting ? "#fff" : "#555"; ctx.lineWidth = 1.5; ctx.stroke(); }
  }
  key.replaceChildren(...(colourBy.value === "score"
    ? [["typical", scoreColour(0)], ["unusual", scoreColour(1)]]
    : labels.map((l, i) => [l, PALETTE[i % PALETTE.length]])).map(([text, colour]) => {
      const li = document.createElement("li");
      const dot = document.createElement("span"); dot.className = "dot"; dot.style.background = colour;
      li.append(dot, text);
      return li;
    }));
}

function nearest(e) {
  const r = canvas.getBoundingClientRect();
  const mx = e.clientX - r.left, my = e.clientY - r.top;
  let best = null, bestD = 100;
  for (const p of points) {
    const [x, y] = place(p, r.width, r.height);
    const d = (x - mx) ** 2 + (y - my) ** 2;
    if (d < bestD) { best = p; bestD = d; }
  }
  return best;
}

canvas.addEventListener("mousemove", (e) => {
  const p = nearest(e);
  tip.hidden = !p;
  canvas.style.cursor = p ? "pointer" : "default";
  if (!p) return;
  const r = canvas.getBoundingClientRect();
  tip.style.left = `${Math.min(e.clientX - r.left + 12, r.width - 140)}px`;
  tip.style.top = `${e.clientY - r.top + 12}px`;
  const img = tip.querySelector("img");
  if (img.dataset.id !== String(p.id)) { img.src = `/thumbs/${p.id}.jpg`; img.dataset.id = String(p.id); }
  tip.querySelector("span").textContent = `#${p.id} ${p.label} · anomaly ${(p.anomaly_score ?? 0).toFixed(2)}`;
});
canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
canvas.addEventListener("click", (e) => { const p = nearest(e); if (p) window.location = `/classifications/${p.id}`; });
colourBy.addEventListener("change", draw);
window.addEventListener("resize", draw);

async function loadMap() {
  const res = await fetch("/api/anomalies/map");
  if (!res.ok) return;
  points = await res.json();
  document.getElementById("map-layout").hidden = res.headers.get("X-Map-Layout") !== "pca";
  canvas.dataset.points = String(points.length);
  draw();
}

load();
loadMap();
