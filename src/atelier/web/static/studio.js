// atelier studio: the page's behaviour. Controls are generated from GET /api/methods (the method
// configs the CLI also reads); every request goes to the JSON API documented at /docs.
"use strict";
const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const state = { methods: {}, palette: [], content: null, styles: [], model: null, job: null, painted: false,
                brush: 0, previews: 0, previewAbort: null, previewTimer: null, resultJob: null, command: "" };

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    const error = new Error(message); error.status = response.status; throw error;
  }
  return response;
}
const json = (body) => ({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
function showError(error) { $("error").textContent = error ? (error.message || String(error)) : ""; }
function setStatus(text) { $("status").textContent = text; }

async function upload(file, purpose) {
  const form = new FormData();
  form.append("file", file, file.name || "upload.png");
  form.append("purpose", purpose);
  return (await api("/api/uploads", { method: "POST", body: form })).json();
}

// ---- method and its controls -------------------------------------------------------------------
function buildOptions() {
  const method = state.methods[$("method").value];
  $("method-summary").textContent = method.summary + " — " + method.paper;
  const box = $("options");
  box.innerHTML = "";
  for (const control of method.controls) {
    const label = document.createElement("label");
    label.title = control.help;
    label.textContent = control.name.replace(/_/g, " ") + " ";
    let input;
    if (control.kind === "menu") {
      input = document.createElement("select");
      for (const choice of control.choices) {
        const option = document.createElement("option"); option.value = option.textContent = choice; input.append(option);
      }
      if (control.name === "model" && state.model) input.value = state.model;
      else input.value = control.default;
    } else if (control.kind === "toggle") {
      input = document.createElement("input"); input.type = "checkbox"; input.checked = !!control.default;
    } else {
      input = document.createElement("input");
      input.type = control.kind === "slider" ? "range" : control.kind === "number" ? "number" : "text";
      if (control.kind === "slider") { input.min = control.min; input.max = control.max; input.step = control.step; }
      input.value = control.default;
    }
    input.id = "opt-" + control.name;
    input.dataset.option = control.name;
    input.dataset.kind = control.kind;
    input.dataset.default = String(control.kind === "toggle" ? !!control.default : control.default);
    input.setAttribute("aria-label", control.name);
    input.addEventListener("input", () => { if (control.name === "model") chooseModel(input.value); schedulePreview(); });
    label.append(input);
    if (control.kind === "slider") {
      const shown = document.createElement("output"); shown.textContent = control.default;
      input.addEventListener("input", () => { shown.textContent = input.value; });
      label.append(shown);
    }
    box.append(label);
    if (control.name === "model") { state.model = input.value; chooseModel(input.value); }
  }
  renderStyles();
}

function optionValues() {
  const values = {};
  for (const input of document.querySelectorAll("#options [data-option]")) {
    const kind = input.dataset.kind;
    let value = kind === "toggle" ? input.checked : input.value;
    if (kind === "slider") value = parseFloat(value);
    if (kind === "number") value = parseInt(value, 10);
    if (String(value) !== input.dataset.default) values[input.dataset.option] = value;
  }
  return values;
}

// ---- styles: gallery, uploads, weights, brushes -------------------------------------------------
function usesStyles() { return state.methods[$("method").value].styles; }

function renderStyles() {
  const box = $("styles");
  box.innerHTML = "";
  const names = usesStyles() ? state.styles.map((s) => s.label) : (state.modelStyles || []);
  names.forEach((name, index) => {
    const row = document.createElement("div"); row.className = "style-row";
    const swatch = document.createElement("span"); swatch.className = "swatch";
    swatch.style.background = "rgb(" + state.palette[index % state.palette.length].join(",") + ")";
    const weight = document.createElement("input");
    weight.type = "range"; weight.min = 0; weight.max = 1; weight.step = 0.05; weight.value = 1;
    weight.className = "weight"; weight.setAttribute("aria-label", "weight of " + name);
    weight.addEventListener("input", schedulePreview);
    row.append(swatch, name + " ", weight);
    box.append(row);
  });
  const brushes = $("brush-list");
  brushes.innerHTML = "";
  const photo = $("method").value === "photo";  // photo paints corresponding regions, not one mask per style
  (photo ? ["region 1", "region 2", "region 3", "region 4"] : names).forEach((name, index) => {
    const button = document.createElement("button");
    button.className = "brush"; button.textContent = name; button.dataset.index = index;
    button.style.borderLeft = "12px solid rgb(" + state.palette[index].join(",") + ")";
    button.setAttribute("aria-pressed", String(index === state.brush));
    button.addEventListener("click", () => { state.brush = index; renderStyles(); });
    brushes.append(button);
  });
  showStyleRegions();
}

function showStyleRegions() {
  const show = $("method").value === "photo" && state.styles.length > 0;
  $("style-regions").hidden = !show;
  if (show && $("style-view").dataset.ref !== state.styles[0].ref) {
    $("style-view").dataset.ref = state.styles[0].ref;
    $("style-view").src = state.styles[0].url;
    state.stylePainted = false;
  }
}

function weights() {
  const sliders = [...document.querySelectorAll("#styles .weight")].map((s) => parseFloat(s.value));
  if (sliders.length < 2 || sliders.every((w) => w === sliders[0])) return null;
  return sliders.some((w) => w > 0) ? sliders : null;
}

function chooseModel(name) {
  const item = (state.gallery || []).find((g) => g.kind === "model" && g.id === name);
  state.model = name; state.modelStyles = item ? item.styles : [name];
  renderStyles();
}

async function loadGallery() {
  const { items } = await (await api("/api/gallery")).json();
  state.gallery = items;
  const box = $("gallery");
  for (const item of items) {
    const tile = document.createElement("button");
    tile.className = "tile"; tile.textContent = item.label; tile.title = item.kind === "model"
      ? "trained network: " + item.styles.join(", ") : "painting: " + item.label;
    tile.dataset.ref = item.kind === "model" ? "model:" + item.id : "gallery:" + item.id;
    const thumb = item.kind === "model" ? item.thumb : item.id;
    if (thumb) tile.style.backgroundImage = "url(/api/gallery/" + thumb + "?thumb=true)";
    tile.addEventListener("click", () => pickTile(item, tile));
    box.append(tile);
  }
}

function pickTile(item, tile) {
  if (item.kind === "model") {
    $("method").value = "johnson"; state.model = item.id; buildOptions(); chooseModel(item.id);
    document.querySelectorAll(".tile").forEach((t) => t.classList.toggle("chosen", t === tile));
  } else {
    if (!usesStyles()) { $("method").value = "adain"; buildOptions(); }
    const ref = tile.dataset.ref;
    const at = state.styles.findIndex((s) => s.ref === ref);
    if (at >= 0) state.styles.splice(at, 1);
    else state.styles.push({ ref, label: item.label, url: "/api/gallery/" + item.id });
    tile.classList.toggle("chosen", at < 0);
    document.querySelectorAll(".tile[data-ref^='model:']").forEach((t) => t.classList.remove("chosen"));
    renderStyles();
  }
  schedulePreview();
}

// ---- requests -----------------------------------------------------------------------------------
async function request(preview) {
  if (!state.content) throw new Error("upload a content photo first");
  const method = $("method").value;
  const body = { content: state.content.id, method, options: optionValues(), styles: usesStyles() ? state.styles.map((s) => s.ref) : [],
                 preview, preserve_color: $("preserve-color").value };
  if (!usesStyles() && state.model) body.options.model = state.model;
  const w = weights(); if (w) body.style_weights = w;
  if (!preview) body.size = parseInt($("size").value, 10) || null;
  if ($("seed").value !== "") body.seed = parseInt($("seed").value, 10);
  if (state.content.kind === "video") { body.kind = "video"; delete body.preview; }
  const painting = async (id, name) => {
    const blob = await new Promise((resolve) => $(id).toBlob(resolve, "image/png"));
    return (await upload(new File([blob], name, { type: "image/png" }), "painting")).id;
  };
  if (method === "photo" && state.painted && state.stylePainted) {
    body.content_regions = await painting("paint", "content_regions.png");
    body.style_regions = await painting("style-paint", "style_regions.png");
  } else if (state.painted && state.content.kind !== "video" && state.methods[method].masks) {
    body.mask_painting = await painting("paint", "mask.png");
  }
  return body;
}

function schedulePreview() {
  const method = state.methods[$("method").value];
  if (!state.content || state.content.kind === "video" || method.heavy) return;
  if (usesStyles() && !state.styles.length) return;
  if (!usesStyles() && !state.model) return;
  clearTimeout(state.previewTimer);
  state.previewTimer = setTimeout(preview, 250);  // debounced: one request per pause of the slider
}

async function preview() {
  if (state.previewAbort) state.previewAbort.abort();  // the server cancels the job of a request that went away
  const abort = new AbortController(); state.previewAbort = abort;
  try {
    const body = await request(true);
    setStatus("preview…");
    const response = await api("/api/stylize", Object.assign(json(body), { signal: abort.signal }));
    if (abort.signal.aborted) return;  // a render started meanwhile: its result must not be overwritten
    showResult(URL.createObjectURL(await response.blob()), null, response.headers.get("X-Atelier-Command"), "preview");
    state.previews += 1; $("after").dataset.previews = state.previews;
    showError(null); setStatus("");
  } catch (error) { if (error.name !== "AbortError") { showError(error); setStatus(""); } }
}

function showResult(url, jobId, command, kind) {
  $("after").src = url;
  $("after-wrap").hidden = false;
  $("result-info").textContent = kind;
  state.command = command || "";
  $("command").textContent = state.command;
  $("download-command").disabled = !state.command;
  state.resultJob = jobId;
  $("download").disabled = !jobId;
}

async function render() {
  showError(null);
  clearTimeout(state.previewTimer);  // a full-size render replaces any pending or running preview
  if (state.previewAbort) state.previewAbort.abort();
  const method = state.methods[$("method").value];
  try {
    const body = await request(false);
    if (method.heavy || body.kind === "video") return await runJob(body);
    setStatus("rendering…");
    const response = await api("/api/stylize", json(body));
    const job = response.headers.get("X-Atelier-Job");
    showResult(URL.createObjectURL(await response.blob()), job, response.headers.get("X-Atelier-Command"), "full size");
    addHistory(job, body.method);
    setStatus("done");
  } catch (error) { showError(error); setStatus(""); }
}

async function runJob(body) {
  let job = await (await api("/api/jobs", json(body))).json();
  state.job = job.id;
  $("cancel").disabled = false; $("progress").hidden = false; $("progress").value = 0;
  setStatus(job.kind + " job " + job.state);
  let shown = 0;
  while (job.state === "queued" || job.state === "running") {
    await new Promise((resolve) => setTimeout(resolve, 400));
    job = await (await api("/api/jobs/" + job.id)).json();
    $("progress").value = job.progress;
    $("eta").textContent = job.stage + (job.eta_s != null ? " — ETA " + Math.round(job.eta_s) + " s" : "");
    setStatus(job.kind + " job " + job.state);
    if (job.has_intermediate && Date.now() - shown > 1500) {
      shown = Date.now();
      try {
        const image = await api("/api/jobs/" + job.id + "/intermediate");
        $("after").src = URL.createObjectURL(await image.blob()); $("result-info").textContent = "intermediate";
      } catch (e) { /* none yet */ }
    }
  }
  $("cancel").disabled = true; $("progress").hidden = true; state.job = null;
  setStatus(job.kind + " job " + job.state);
  $("eta").textContent = job.state === "cancelled" ? "cancelled" : "";
  if (job.state === "failed") { showError(new Error(job.error)); return; }
  if (job.state === "done" && job.kind === "video") {
    state.resultJob = job.id; $("download").disabled = false; $("command").textContent = job.command;
    state.command = job.command; $("download-command").disabled = false; $("result-info").textContent = "video ready";
    return;
  }
  if (job.state === "done" || job.state === "cancelled") {
    try {
      const response = await api("/api/jobs/" + job.id + "/result");
      showResult(URL.createObjectURL(await response.blob()), job.id, job.command,
                 job.state === "done" ? "full size" : "cancelled: best so far");
      addHistory(job.id, body.method);
    } catch (e) { /* a job cancelled before it started has no image */ }
  }
}

function addHistory(jobId, method) {
  if (!jobId) return;
  const item = document.createElement("li");
  const link = document.createElement("a"); link.href = "#"; link.textContent = method + " " + jobId;
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    const response = await api("/api/jobs/" + jobId + "/result");
    showResult(URL.createObjectURL(await response.blob()), jobId, state.command, "history");
  });
  item.append(link); $("history").prepend(item);
}

async function download() {
  const format = $("format").value;
  const response = await api("/api/jobs/" + state.resultJob + "/result?format=" + format);
  const video = response.headers.get("content-type").startsWith("video");
  save(await response.blob(), "atelier_result." + (video ? "mp4" : { jpeg: "jpg", tiff16: "tif" }[format] || format));
}
function save(blob, name) {
  const link = document.createElement("a"); link.href = URL.createObjectURL(blob); link.download = name;
  document.body.append(link); link.click(); link.remove();
}

// ---- content and mask painting --------------------------------------------------------------------
async function chooseContent(file) {
  showError(null);
  try {
    state.content = await upload(file, file.type.startsWith("video") ? "video" : "image");
    $("content-name").textContent = state.content.name + " — " + state.content.width + "×" + state.content.height;
    if (state.content.kind !== "video") {
      $("before").src = URL.createObjectURL(file);
      const canvas = $("paint");
      canvas.width = state.content.width; canvas.height = state.content.height;
      state.painted = false;
    }
    schedulePreview();
  } catch (error) { state.content = null; $("content-name").textContent = ""; showError(error); }
}

function paintAt(canvas, event) {
  const box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * canvas.width / box.width;
  const y = (event.clientY - box.top) * canvas.height / box.height;
  const context = canvas.getContext("2d");
  context.fillStyle = "rgb(" + state.palette[state.brush].join(",") + ")";
  context.beginPath(); context.arc(x, y, Math.max(canvas.width, canvas.height) / 16, 0, 2 * Math.PI); context.fill();
}

function setupPainting() {
  const canvases = { paint: "painted", "style-paint": "stylePainted" };
  for (const [id, flag] of Object.entries(canvases)) {
    const canvas = $(id); let down = false;
    canvas.addEventListener("pointerdown", (e) => { down = true; paintAt(canvas, e); state[flag] = true; });
    canvas.addEventListener("pointermove", (e) => { if (down) paintAt(canvas, e); });
    window.addEventListener("pointerup", () => { if (down) { down = false; schedulePreview(); } });
  }
  $("style-view").addEventListener("load", () => {
    $("style-paint").width = $("style-view").naturalWidth; $("style-paint").height = $("style-view").naturalHeight;
  });
  $("paint-toggle").addEventListener("click", () => {
    const on = !$("paint").classList.contains("active");
    for (const id of Object.keys(canvases)) $(id).classList.toggle("active", on);
    $("paint-toggle").setAttribute("aria-pressed", String(on));
  });
  $("paint-clear").addEventListener("click", () => {
    for (const [id, flag] of Object.entries(canvases)) {
      $(id).getContext("2d").clearRect(0, 0, $(id).width, $(id).height); state[flag] = false;
    }
    schedulePreview();
  });
}

function setupCompare() {
  const fit = () => { $("after").style.width = $("before").clientWidth + "px"; };
  $("before").addEventListener("load", fit); window.addEventListener("resize", fit);
  $("compare-pos").addEventListener("input", () => { $("after-wrap").style.width = $("compare-pos").value + "%"; });
}

async function start() {
  const info = await (await api("/api/methods")).json();
  state.palette = info.palette;
  for (const method of info.methods) {
    state.methods[method.name] = method;
    const option = document.createElement("option"); option.value = method.name;
    option.textContent = method.name + (method.heavy ? " (job)" : ""); $("method").append(option);
  }
  $("method").value = "adain";
  buildOptions();
  await loadGallery();
  $("method").addEventListener("change", () => { buildOptions(); schedulePreview(); });
  $("content-file").addEventListener("change", (e) => e.target.files[0] && chooseContent(e.target.files[0]));
  $("style-file").addEventListener("change", async (e) => {
    const file = e.target.files[0]; if (!file) return;
    try {
      const found = await upload(file, "image");
      if (!usesStyles()) { $("method").value = "adain"; buildOptions(); }
      state.styles.push({ ref: "upload:" + found.id, label: found.name, url: URL.createObjectURL(file) });
      renderStyles(); schedulePreview(); showError(null);
    } catch (error) { showError(error); }
  });
  $("render").addEventListener("click", render);
  $("cancel").addEventListener("click", () => state.job && api("/api/jobs/" + state.job, { method: "DELETE" }));
  $("download").addEventListener("click", () => download().catch(showError));
  $("download-command").addEventListener("click", async () => {
    save(new Blob([state.command + "\n"], { type: "text/plain" }), "atelier_command.sh");
    if (!state.resultJob) return;
    const job = await (await api("/api/jobs/" + state.resultJob)).json();
    for (const name of job.files) save(await (await api("/api/jobs/" + job.id + "/files/" + name)).blob(), name);
  });
  setupPainting(); setupCompare();
  $("after-wrap").hidden = true;
  document.body.dataset.ready = "true";
}
start().catch(showError);
