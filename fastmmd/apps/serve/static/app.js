// fastmmd serve: the page. Plain JavaScript, no library; it talks to its own server only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  models: [],          // /api/styles
  maxBytes: Infinity,
  maxVideoBytes: Infinity,
  videoSuffixes: [],
  photo: null,         // {id, name, width, height, video, frames}: the one shown
  batch: [],           // every photo dropped together (several: "Full size" makes a ZIP)
  painting: null,      // {id, name} for an arbitrary-style network
  choice: null,        // {model, style}: the chosen thumbnail
  generation: 0,       // bumps with every new photo: older thumbnail loops stop
  previewBusy: false,
  previewAgain: false,
  job: null,
};

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function failure(response) {
  // One line from the server's {"error": ...}, or the status when the body is not ours.
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (_) { /* not JSON */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

function modelOf(name) {
  return state.models.find((m) => m.name === name);
}

// ---------------------------------------------------------------------------------- contact sheet
function buildSheet() {
  const sheet = $("sheet");
  sheet.textContent = "";
  for (const model of state.models) {
    const styles = model.styles.length > 1 ? model.styles : [null];
    for (const style of styles) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "style";
      button.dataset.model = model.name;
      button.dataset.style = style || "";
      button.dataset.state = "empty";
      button.setAttribute("aria-pressed", "false");
      const img = document.createElement("img");
      img.alt = "";
      const label = document.createElement("span");
      label.textContent = style ? `${model.label}: ${style}` : model.label;
      button.title = label.textContent;
      button.append(img, label);
      button.addEventListener("click", () => choose(model.name, style));
      sheet.append(button);
    }
  }
  $("painting-zone").hidden = !state.models.some((m) => m.arbitrary);
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  return q.toString();
}

async function fillSheet() {
  const generation = ++state.generation;
  const buttons = [...document.querySelectorAll("#sheet .style")];
  for (const b of buttons) b.dataset.state = "empty";
  let done = 0;
  $("sheet").dataset.photo = "";
  $("sheet-status").textContent = `(computing 0 of ${buttons.length})`;
  for (const button of buttons) {
    if (generation !== state.generation) return;
    const model = modelOf(button.dataset.model);
    if (model.arbitrary) {  // its label says what it waits for, until a painting is dropped
      button.querySelector("span").textContent = state.painting ? `${model.label}: ${state.painting.name}`
                                                                : `${model.label} (drop a painting above)`;
    }
    if (model.arbitrary && !state.painting) {
      button.dataset.state = "error";
      button.title = `${model.label}: drop a painting first`;
    } else {
      const url = "/api/preview?" + query({photo: state.photo.id, model: model.name, style: button.dataset.style,
                                           painting: model.arbitrary ? state.painting.id : null, sheet: 1});
      try {
        const response = await fetch(url);
        if (!response.ok) throw new Error(await failure(response));
        const blob = await response.blob();
        if (generation !== state.generation) return;
        const img = button.querySelector("img");
        if (img.src) URL.revokeObjectURL(img.src);
        img.src = URL.createObjectURL(blob);
        button.dataset.state = "done";
      } catch (err) {
        button.dataset.state = "error";
        button.title = String(err.message || err);
      }
    }
    done += 1;
    $("sheet-status").textContent = done < buttons.length ? `(computing ${done} of ${buttons.length})` : "";
  }
  $("sheet").dataset.photo = state.photo.id;  // every thumbnail of this photo is in
}

// ---------------------------------------------------------------------------------- choosing
function choose(modelName, style) {
  const model = modelOf(modelName);
  state.choice = {model: modelName, style: style};
  for (const b of document.querySelectorAll("#sheet .style")) {
    b.setAttribute("aria-pressed", String(b.dataset.model === modelName && (b.dataset.style || null) === style));
  }
  $("chosen").textContent = style ? `${model.label}: ${style}` : model.label;
  const strength = $("strength");
  if (model.strength) {
    strength.disabled = false;
    strength.min = model.strength.min;
    strength.max = model.strength.max;
    if (strength.dataset.model !== modelName) strength.value = model.strength.default;
    strength.dataset.model = modelName;
    $("strength-note").textContent = `0 = your photo, ${model.strength.default} = as trained, up to ${model.strength.max}`;
  } else {
    strength.disabled = true;
    $("strength-note").textContent = model.no_strength;
  }
  $("strength-value").textContent = strength.disabled ? "" : strength.value;
  const blendWith = $("blend-with");
  blendWith.textContent = "";
  blendWith.append(new Option("(no blend)", ""));
  if (model.styles.length > 1) {
    for (const other of model.styles) if (other !== (style || model.styles[0])) blendWith.append(new Option(other, other));
    blendWith.disabled = false;
    $("blend-note").textContent = `blends two of the ${model.styles.length} styles this network learnt`;
  } else {
    blendWith.disabled = true;
    $("blend-note").textContent = model.no_blend;
  }
  syncBlend();
  $("full").disabled = !state.photo;
  settingsChanged();
}

function syncBlend() {
  $("blend").disabled = $("blend-with").disabled || !$("blend-with").value;
  $("blend-value").textContent = $("blend").value;
}

function settings() {
  if (!state.photo || !state.choice) return null;
  return {photo: state.photo.id, ...styleSettings()};
}

// The chosen style and its controls, without the photo (a camera frame takes the photo's place).
function styleSettings() {
  const model = modelOf(state.choice.model);
  const s = {model: model.name, style: state.choice.style};
  if (model.strength && Number($("strength").value) !== model.strength.default) s.strength = Number($("strength").value);
  if (!$("blend-with").disabled && $("blend-with").value) {
    s.blend_with = $("blend-with").value;
    s.blend = Number($("blend").value);
  }
  if (model.arbitrary && state.painting) s.painting = state.painting.id;
  return s;
}

function settingsChanged() {
  $("download").hidden = true;
  $("progress").hidden = true;
  $("progress-text").textContent = "";
  state.job = null;
  if (!camera.running) updatePreview();  // while the camera runs, its next frame shows the change
}

// One preview request at a time; moves of the slider meanwhile make one more request, for the latest value.
async function updatePreview() {
  const s = settings();
  if (!s) return;
  if (state.previewBusy) {
    state.previewAgain = true;
    return;
  }
  state.previewBusy = true;
  const key = query(s);
  const preview = $("preview");
  preview.dataset.state = "busy";
  $("status").textContent = "computing the preview…";
  const started = performance.now();
  try {
    const response = await fetch("/api/preview?" + key);
    if (!response.ok) throw new Error(await failure(response));
    const blob = await response.blob();
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    await preview.decode().catch(() => {});
    preview.hidden = false;
    $("placeholder").hidden = true;
    preview.dataset.key = key;
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    const whole = state.photo.video ? `“Stylize the clip” computes ${state.photo.frames || "all"} frames`
                                    : `“Full size” computes ${state.photo.width}×${state.photo.height}`;
    const what = state.photo.video ? " (its first frame)" : "";
    $("status").textContent = `${state.photo.name}${what}: preview (at most ${PREVIEW} px) in ${seconds} s; ${whole}`;
    clearError();
  } catch (err) {
    showError(String(err.message || err));
    $("status").textContent = "";
  } finally {
    state.previewBusy = false;
    preview.dataset.state = "done";
  }
  if (state.previewAgain) {
    state.previewAgain = false;
    updatePreview();
  }
}
let PREVIEW = 384;

// ---------------------------------------------------------------------------------- full size
async function fullSize() {
  const s = settings();
  if (!s) return;
  const progress = $("progress");
  progress.hidden = false;
  progress.removeAttribute("value");
  $("download").hidden = true;
  $("full").disabled = true;
  try {
    const body = state.batch.length > 1 ? {...s, photos: state.batch.map((p) => p.id)} : s;
    const response = await fetch("/api/jobs", {method: "POST", headers: {"Content-Type": "application/json"},
                                               body: JSON.stringify(body)});
    if (!response.ok) throw new Error(await failure(response));
    let job = await response.json();
    state.job = job.id;
    while (job.state === "queued" || job.state === "running") {
      const poll = await fetch(`/api/jobs/${job.id}?wait=1`);  // answers as soon as the job moves
      if (state.job !== job.id) return;  // the settings changed meanwhile
      if (!poll.ok) throw new Error(await failure(poll));
      job = await poll.json();
      if (job.total > 1 && job.state === "running") {
        progress.max = job.total;
        progress.value = job.done;
      }
      const waiting = job.state === "queued" ? ` (${job.waiting} ahead)` : "";
      $("progress-text").textContent = `${job.message}${waiting}, ${job.seconds.toFixed(1)} s`;
    }
    if (job.state === "error") throw new Error(job.error);
    const url = `/api/jobs/${job.id}/result`;
    if (!state.photo.video && state.batch.length < 2) {  // a clip or a ZIP is downloaded; the preview stays
      const preview = $("preview");
      preview.dataset.state = "busy";
      preview.src = url;
      await preview.decode().catch(() => {});
      preview.dataset.key = "full:" + query(s);
      preview.dataset.state = "done";
    }
    const link = $("download");
    link.href = url + "?download=1";
    link.download = job.filename;
    link.hidden = false;
    progress.max = 1;
    progress.value = 1;
    $("progress-text").textContent = `${job.message} in ${job.seconds.toFixed(1)} s`;
    $("status").textContent = state.photo.video || state.batch.length > 1 ? "stylized, ready to download"
                                                                        : `full size: ${state.photo.width}×${state.photo.height}`;
    clearError();
  } catch (err) {
    progress.hidden = true;
    $("progress-text").textContent = "";
    showError(String(err.message || err));
  } finally {
    $("full").disabled = !state.photo;
  }
}

// ---------------------------------------------------------------------------------- camera
// Live: a frame (<= the preview size) goes to the server, its stylized image comes back, then the next frame.
const camera = {stream: null, running: false, frames: 0, started: 0};

function grab(size) {
  const video = $("camera-video");
  const scale = Math.min(1, size / Math.max(video.videoWidth, video.videoHeight));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(8, Math.round(video.videoWidth * scale));
  canvas.height = Math.max(8, Math.round(video.videoHeight * scale));
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

function stopCamera() {
  camera.running = false;
  if (camera.stream) for (const track of camera.stream.getTracks()) track.stop();
  camera.stream = null;
  $("camera").textContent = "Camera (live)";
  $("snap").hidden = true;
}

async function startCamera() {
  if (camera.running) {
    stopCamera();
    updatePreview();
    return;
  }
  if (!state.choice && state.models.length) {
    const first = state.models[0];
    choose(first.name, first.styles.length > 1 ? first.styles[0] : null);
  }
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({video: true, audio: false});
    const video = $("camera-video");
    video.srcObject = camera.stream;
    await video.play();
  } catch (err) {
    stopCamera();
    showError(`the camera is not available: ${err.message || err.name || err}`);
    return;
  }
  clearError();
  camera.running = true;
  camera.frames = 0;
  camera.started = performance.now();
  $("camera").textContent = "Stop the camera";
  $("snap").hidden = false;
  const preview = $("preview");
  while (camera.running) {
    const params = query(styleSettings());
    try {
      const response = await fetch("/api/live?" + params, {method: "POST", body: await grab(PREVIEW)});
      if (!response.ok) throw new Error(await failure(response));
      const blob = await response.blob();
      if (!camera.running) break;
      if (preview.src) URL.revokeObjectURL(preview.src);
      preview.src = URL.createObjectURL(blob);
      await preview.decode().catch(() => {});
    } catch (err) {
      showError(String(err.message || err));
      stopCamera();
      break;
    }
    camera.frames += 1;
    preview.hidden = false;
    $("placeholder").hidden = true;
    preview.dataset.key = "live:" + params;
    preview.dataset.frames = String(camera.frames);
    preview.dataset.state = "done";
    const rate = camera.frames / ((performance.now() - camera.started) / 1000);
    $("status").textContent = `camera: ${rate.toFixed(1)} frames/s at most ${PREVIEW} px`;
  }
}

async function snap() {
  const blob = await grab(4096);
  stopCamera();
  await takePhoto(new File([blob], "camera.jpg", {type: "image/jpeg"}));
}

// ---------------------------------------------------------------------------------- uploads
async function upload(file) {
  const name = (file.name || "").toLowerCase();
  const video = state.videoSuffixes.some((suffix) => name.endsWith(suffix));  // the server's list
  if (video && file.size > state.maxVideoBytes) {
    throw new Error(`“${file.name}” is too large: this server takes clips up to ${state.maxVideoBytes / 1e6} MB`);
  }
  if (!video && file.size > state.maxBytes) {
    throw new Error(`“${file.name}” is too large: this server takes files up to ${state.maxBytes / 1e6} MB`);
  }
  const response = await fetch("/api/photo?" + query({name: file.name || "pasted image"}), {method: "POST", body: file});
  if (!response.ok) throw new Error(await failure(response));
  return response.json();
}

// One file or several (dropped or chosen together: all stylized into one ZIP); a clip goes alone.
async function takePhoto(files) {
  files = [...(files instanceof File ? [files] : files || [])];
  if (!files.length) return;
  if (camera.running) stopCamera();
  const uploaded = [];
  const problems = [];
  for (const [k, file] of files.entries()) {
    $("status").textContent = `reading ${file.name || "the image"}` + (files.length > 1 ? ` (${k + 1} of ${files.length})…` : "…");
    try {
      uploaded.push(await upload(file));
    } catch (err) {
      problems.push(String(err.message || err));
    }
  }
  if (!uploaded.length) {
    showError(problems.join("; "));
    $("status").textContent = "";
    return;
  }
  const photos = uploaded.some((p) => p.video) ? [uploaded.find((p) => p.video)] : uploaded;
  if (photos.length < uploaded.length) problems.push("a clip goes alone: the other files were left out");
  state.batch = photos;
  state.photo = photos[0];
  if (problems.length) showError("skipped: " + problems.join("; "));
  else clearError();
  document.body.dataset.photo = state.photo.id;
  $("full").disabled = !state.choice;
  $("status").textContent = `${state.photo.name}: ${state.photo.width}×${state.photo.height}`;
  const several = state.batch.length > 1;
  $("full").textContent = state.photo.video ? "Stylize the clip" : several ? `Stylize all ${state.batch.length} photos`
                                                                         : "Full size";
  $("download").textContent = state.photo.video ? "Download MP4" : several ? "Download ZIP" : "Download PNG";
  if (several) $("status").textContent += ` (and ${state.batch.length - 1} more; previews show the first)`;
  if (!state.choice && state.models.length) {
    const first = state.models[0];
    choose(first.name, first.styles.length > 1 ? first.styles[0] : null);
  } else {
    settingsChanged();
  }
  fillSheet();
}

async function takePainting(file) {
  if (!file) return;
  try {
    const painting = await upload(file);
    state.painting = {id: painting.id, name: painting.name};
    $("painting-name").textContent = painting.name;
    clearError();
    if (state.photo) {
      settingsChanged();
      fillSheet();
    }
  } catch (err) {
    showError(String(err.message || err));
  }
}

function dropTarget(zone, take) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    e.stopPropagation();
    zone.classList.remove("over");
    take([...e.dataTransfer.files]);
  });
}

async function start() {
  try {
    const response = await fetch("/api/styles");
    if (!response.ok) throw new Error(await failure(response));
    const info = await response.json();
    state.models = info.models;
    state.maxBytes = info.max_upload_mb * 1e6;
    state.maxVideoBytes = info.max_video_mb * 1e6;
    state.videoSuffixes = info.video_suffixes;
    PREVIEW = info.preview_size;
  } catch (err) {
    showError(`cannot list the styles: ${err.message || err}`);
    return;
  }
  buildSheet();
  $("file").addEventListener("change", (e) => { takePhoto([...e.target.files]); e.target.value = ""; });
  $("painting-file").addEventListener("change", (e) => { takePainting(e.target.files[0]); e.target.value = ""; });
  dropTarget($("drop"), (files) => takePhoto(files));
  dropTarget($("painting-zone"), (files) => takePainting(files[0]));
  // A photo dropped anywhere else on the page is a photo too (and the browser does not navigate away).
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => { e.preventDefault(); takePhoto([...e.dataTransfer.files]); });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData ? e.clipboardData.files : [])].find((f) => f.type.startsWith("image/"));
    if (file) takePhoto(file);
  });
  $("strength").addEventListener("input", () => {
    $("strength-value").textContent = $("strength").value;
    settingsChanged();
  });
  $("blend-with").addEventListener("change", () => { syncBlend(); settingsChanged(); });
  $("blend").addEventListener("input", () => { syncBlend(); settingsChanged(); });
  $("full").addEventListener("click", fullSize);
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {  // a secure context: localhost, https
    $("camera-box").hidden = false;
    $("camera").addEventListener("click", startCamera);
    $("snap").addEventListener("click", snap);
  }
  document.body.dataset.ready = "true";
}

start();
