// Upload page: drag-and-drop or file button, preview, Predict → /api/classify.
const form = document.getElementById("upload");
const input = document.getElementById("file");
const drop = document.getElementById("drop");
const button = document.getElementById("predict");
const preview = document.getElementById("preview");
let chosen = null;

function choose(file) {
  chosen = file;
  button.disabled = !file;
  document.getElementById("error").hidden = true;
  if (file && file.type.startsWith("image/")) {
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  }
}
input.addEventListener("change", () => choose(input.files[0]));
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => choose(e.dataTransfer.files[0]));

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!chosen) return;
  button.disabled = true;
  const body = new FormData();
  body.append("image", chosen);
  const res = await fetch("/api/classify", { method: "POST", body });
  const data = await res.json();
  button.disabled = false;
  if (!res.ok) {
    const err = document.getElementById("error");
    err.textContent = data.error ? data.error.message : "request failed";
    err.hidden = false;
    document.getElementById("result").hidden = true;
    return;
  }
  document.getElementById("label").textContent = data.label;
  document.getElementById("confidence").textContent = `${(100 * data.confidence).toFixed(1)}%`;
  document.getElementById("warning").hidden = data.confidence >= 0.6;
  const bars = document.getElementById("bars");
  bars.replaceChildren(...Object.entries(data.probabilities).map(([label, p]) => {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span"); name.textContent = label;
    const fill = document.createElement("div"); fill.style.width = `${(100 * p).toFixed(1)}%`;
    const track = document.createElement("span"); track.append(fill);
    const pct = document.createElement("span"); pct.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(name, track, pct);
    return row;
  }));
  document.getElementById("record").href = `/classifications/${data.id}`;
  document.getElementById("result").hidden = false;
});
