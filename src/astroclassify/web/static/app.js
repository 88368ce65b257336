// Upload page: choose or drop several images, Predict sends each to /api/classify and shows
// its label, confidence, probability bars, a Grad-CAM toggle and the archive credit.
// The Grad-CAM toggle also works on the detail page (any button.cam next to an img.shot).

const MAX_FILES = 50;
const DISPLAYABLE = /^image\/(jpeg|png|webp|gif|bmp)$/;
const MAX_PREVIEW_BYTES = 20 * 1024 * 1024;  // the server's default upload limit

function toggleCam(button) {
  const box = button.closest(".result, main");
  const img = box.querySelector("img.shot");
  const on = button.getAttribute("aria-pressed") !== "true";
  img.src = on ? img.dataset.explanation : img.dataset.original;
  img.alt = on ? `Grad-CAM overlay: red areas drove the prediction, blue ones did not` : img.dataset.alt;
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "Show the original image" : "Show what the model looked at";
  const legend = box.querySelector(".cam-legend");
  if (legend) legend.hidden = !on;
}

const VIEWS = { none: "one view", rot4: "4 rotated views", rot4flip: "8 rotated and mirrored views" };
document.addEventListener("click", (e) => {
  const button = e.target.closest("button.cam");
  if (button) toggleCam(button);
});

function fillBars(container, probabilities) {
  container.replaceChildren(...Object.entries(probabilities).map(([label, p]) => {
    const row = document.createElement("div");
    row.className = "bar";
    row.setAttribute("role", "img");
    row.setAttribute("aria-label", `${label} ${(100 * p).toFixed(1)} percent`);
    const name = document.createElement("span"); name.textContent = label;
    const fill = document.createElement("div"); fill.style.width = `${(100 * p).toFixed(1)}%`;
    const track = document.createElement("span"); track.append(fill);
    const pct = document.createElement("span"); pct.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(name, track, pct);
    return row;
  }));
}

const form = document.getElementById("upload");
if (form) {
  const input = document.getElementById("file");
  const drop = document.getElementById("drop");
  const button = document.getElementById("predict");
  const chosenList = document.getElementById("chosen");
  const results = document.getElementById("results");
  const progress = document.getElementById("progress");
  const error = document.getElementById("error");
  let chosen = [];

  function choose(fileList) {
    const files = [...fileList];
    chosen = files.slice(0, MAX_FILES);
    error.hidden = files.length <= MAX_FILES;
    error.textContent = `Only the first ${MAX_FILES} of ${files.length} files are used; send the rest afterwards.`;
    button.disabled = chosen.length === 0;
    chosenList.replaceChildren(...chosen.map((file) => {
      const item = document.createElement("li");
      const img = document.createElement("img");
      img.alt = file.name;
      if (DISPLAYABLE.test(file.type)) {
        img.src = URL.createObjectURL(file);
        item.append(img);
      } else {
        // FITS, 16-bit TIFF: the server renders a preview as the chosen model will see it.
        item.textContent = file.name;
        preview(file).then((url) => { if (url) { img.src = url; item.replaceChildren(img); } });
      }
      return item;
    }));
  }
  async function preview(file) {
    if (file.size > MAX_PREVIEW_BYTES) return null;
    const body = new FormData();
    body.append("image", file);
    const model = document.getElementById("model");
    if (model) body.append("model", model.value);
    try {
      const res = await fetch("/api/preview", { method: "POST", body });
      return res.ok ? URL.createObjectURL(await res.blob()) : null;
    } catch (err) {
      return null;  // no preview; the name stays and classifying still works
    }
  }
  input.addEventListener("change", () => choose(input.files));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => choose(e.dataTransfer.files));

  async function classify(file, batch) {
    const card = document.getElementById("result-card").content.firstElementChild.cloneNode(true);
    const $ = (selector) => card.querySelector(selector);
    $(".name").textContent = file.name;
    batch.append(card);
    const body = new FormData();
    body.append("image", file);
    const model = document.getElementById("model");
    if (model) body.append("model", model.value);
    let res, data;
    try {
      res = await fetch("/api/classify", { method: "POST", body });
      data = await res.json();
    } catch (err) {
      res = { ok: false };
      data = { error: { message: `the server did not answer (${err.message})` } };
    }
    if (!res.ok) {
      $(".error").textContent = data.error ? data.error.message : "request failed";
      $(".error").hidden = false;
      $("figure").hidden = true;
      return;
    }
    const shot = $(".shot");
    shot.dataset.original = DISPLAYABLE.test(file.type) ? URL.createObjectURL(file) : `/thumbs/${data.id}.jpg`;
    shot.dataset.explanation = data.explanation_url;
    shot.dataset.alt = file.name;
    shot.src = shot.dataset.original;
    shot.alt = file.name;
    $(".label").textContent = data.label;
    $(".confidence").textContent = `${(100 * data.confidence).toFixed(1)}%`;
    $(".verdict").hidden = false;
    $(".how").textContent = `Model ${data.model} ${data.model_version}, ${VIEWS[data.tta] || data.tta || "views unknown"}`;
    $(".how").hidden = false;
    $(".warning").hidden = !data.low_confidence;
    if (data.anomaly_score !== null && data.anomaly_score !== undefined) {
      const line = $(".anomaly-line");
      const score = data.anomaly_score.toFixed(2);
      line.textContent = data.unusual
        ? `Unusual image: anomaly score ${score}, unlike ${(100 * data.anomaly_score).toFixed(0)}% of typical images. Worth a closer look.`
        : `Anomaly score ${score}: more unusual than ${(100 * data.anomaly_score).toFixed(0)}% of typical images, not flagged.`;
      line.classList.toggle("unusual", data.unusual);
      line.hidden = false;
    }
    if (data.already_stored) {
      $(".first").href = `/classifications/${data.id}`;
      $(".repeat").hidden = false;
    }
    fillBars($(".bars"), data.probabilities);
    const tags = data.tags || {};
    $(".tags").hidden = Object.keys(tags).length === 0;
    fillBars($(".tag-bars"), tags);
    $(".cam").hidden = false;
    $(".record").href = `/classifications/${data.id}`;
    $(".record-link").hidden = false;
    if (data.credit) {
      const credit = $(".credit");
      const link = document.createElement("a");
      link.href = data.credit.url;
      link.textContent = data.credit.id;
      credit.append(`Credit: ${data.credit.text} (${data.credit.license}), `, link);
      credit.hidden = false;
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!chosen.length) return;
    button.disabled = true;
    const files = chosen;
    const batch = document.createElement("div");  // newest batch on top, files in the order chosen
    results.prepend(batch);
    for (const [i, file] of files.entries()) {
      progress.textContent = `Classifying ${i + 1} of ${files.length}…`;
      await classify(file, batch);
    }
    progress.textContent = `${files.length} image${files.length === 1 ? "" : "s"} classified.`;
    button.disabled = false;
  });
}

// Marks (detail and anomalies pages): any .marks box with data-record holds two buttons.
async function sendMark(box, interesting) {
  const res = await fetch(`/api/classifications/${box.dataset.record}/mark`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ interesting }),
  });
  const status = box.querySelector(".mark-status");
  if (!res.ok) {
    const data = await res.json().catch(() => ({}));
    status.textContent = data.error ? data.error.message : "could not save the mark";
    return false;
  }
  box.querySelectorAll("button.mark").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.interesting === String(interesting))));
  status.textContent = interesting ? "marked interesting" : "marked not interesting";
  box.dispatchEvent(new CustomEvent("marked", { bubbles: true, detail: { interesting } }));
  return true;
}
document.addEventListener("click", (e) => {
  const button = e.target.closest("button.mark");
  if (button) sendMark(button.closest(".marks"), button.dataset.interesting === "true");
});
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key !== "i" && e.key !== "b") return;
  const box = document.querySelector(".marks.current") || (document.querySelectorAll(".marks").length === 1 && document.querySelector(".marks"));
  if (box) { e.preventDefault(); sendMark(box, e.key === "i"); }
});
