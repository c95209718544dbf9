// streamsr preview: two renderings of a clip, wipe or side by side, synchronized zoom and pan.
// Plain JavaScript, no dependencies. The stage's data-* attributes say what is shown (frame,
// zoom, offsets, wipe position), for people inspecting the page and for the browser tests.
"use strict";

const $ = (id) => document.getElementById(id);
const stage = $("stage"), paneA = $("pane-a"), paneB = $("pane-b"), wipeLine = $("wipe-line");
const scrub = $("scrub"), playBtn = $("play");
const S = {
  info: null, n: 0, count: 1, fps: 25, out: [1, 1], zoom: 0, cx: 0, cy: 0, mode: "wipe", wipe: 0.5,
  left: "other", playing: false, request: 0, metrics: new Map(), frameFacts: null,
};
let imgA = $("img-a"), imgB = $("img-b");

const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmt = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${url}: ${r.status}`);
  return body;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.draggable = false;
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${url}`));
    img.src = url;
  });
}

// -- layout: one transform for both renderings, so zoom and pan stay in step --------------------
function layout() {
  const [W, H] = S.out;
  const pw = paneB.clientWidth, ph = paneB.clientHeight;
  const z = S.zoom || Math.min(pw / W, ph / H);
  if (!S.zoom || W * z <= pw) S.cx = W / 2; else S.cx = clamp(S.cx, pw / (2 * z), W - pw / (2 * z));
  if (!S.zoom || H * z <= ph) S.cy = H / 2; else S.cy = clamp(S.cy, ph / (2 * z), H - ph / (2 * z));
  const tx = Math.round(pw / 2 - S.cx * z), ty = Math.round(ph / 2 - S.cy * z);
  for (const img of [imgA, imgB]) {
    const s = (z * W) / (img.naturalWidth || W);  // the input view is smaller: stretched to the output grid
    img.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
    img.classList.toggle("px", S.zoom >= 1 || (img === imgA && S.left === "input"));
  }
  const wx = Math.round(S.wipe * pw);
  paneB.style.clipPath = S.mode === "wipe" ? `inset(0 0 0 ${wx}px)` : "none";
  wipeLine.style.left = `${wx}px`;
  Object.assign(stage.dataset, { z: String(z), tx: String(tx), ty: String(ty), wipe: String(wx), mode: S.mode });
}

// -- frames --------------------------------------------------------------------------------------
async function show(n) {
  n = clamp(Math.round(n), 0, S.count - 1);
  S.n = n;
  scrub.value = String(n);
  updateLabel();
  const id = ++S.request;
  let a, b;
  try {
    [a, b] = await Promise.all([loadImage(`/frame/${n}?view=${S.left}`), loadImage(`/frame/${n}?view=sr`)]);
  } catch (err) {
    if (id === S.request) $("title").textContent = String(err.message);
    return false;
  }
  if (id !== S.request) return false;  // a newer frame was asked for meanwhile
  for (const [img, old, pane] of [[a, imgA, paneA], [b, imgB, paneB]]) {
    img.id = old.id;
    img.alt = old.alt;
    pane.replaceChild(img, old);
  }
  imgA = a;
  imgB = b;
  layout();
  stage.dataset.frame = String(n);
  facts(n);
  return true;
}

function updateLabel() {
  const t = S.n / S.fps;
  $("frame-label").textContent = `frame ${S.n + 1} / ${S.count}  ${t.toFixed(2)} s`;
}

async function facts(n) {
  let m;
  try { m = await getJSON(`/api/metrics/${n}`); } catch { return; }
  if ("psnr" in m) { S.metrics.set(n, m); drawPlot(); }
  if (n !== S.n) return;
  S.frameFacts = m;
  renderFacts();
}

function renderFacts() {
  const i = S.info, m = S.frameFacts || {};
  const sr = i.sr, other = i.other;
  const rows = [
    ["model", sr.label], ["backend", `${sr.backend} (${sr.device})`],
    ["size", `${i.input.width}x${i.input.height} → ${sr.out_size[0]}x${sr.out_size[1]}`],
    ["scale", sr.geometry], ["colour on", `${sr.colour_on}, ${sr.pix_fmt}`],
    [`${sr.model} inference`, m.sr_ms !== undefined ? `${fmt(m.sr_ms, 1)} ms` : "–"],
    ["compared with", other.label],
    [`${other.model} time`, m.other_ms !== undefined ? `${fmt(m.other_ms, 1)} ms` : "–"],
  ];
  if (m.noise !== undefined) rows.push(["noise told (σ)", fmt(m.noise, 2)]);
  if (i.reference) {
    const p = m.psnr || {}, s = m.ssim || {};
    rows.push([`PSNR-Y ${sr.model}`, `${fmt(p.sr)} dB`], [`PSNR-Y ${other.model}`, `${fmt(p.other)} dB`],
      [`SSIM-Y ${sr.model}`, fmt(s.sr, 4)], [`SSIM-Y ${other.model}`, fmt(s.other, 4)]);
  }
  const dl = $("facts");
  dl.replaceChildren(...rows.map(([k, v]) => {
    const div = document.createElement("div");
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v;
    div.append(dt, dd);
    return div;
  }));
}

// -- metrics over the clip -----------------------------------------------------------------------
function drawPlot() {
  const c = $("plot"), g = c.getContext("2d");
  const W = c.width, H = c.height, pad = 8;
  g.clearRect(0, 0, W, H);
  const values = [...S.metrics.values()].flatMap((m) => [m.psnr.sr, m.psnr.other]).filter((v) => v !== null);
  if (!values.length) return;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 0.5) { lo -= 0.25; hi += 0.25; }
  const x = (k) => pad + ((W - pad - 80) * k) / Math.max(1, S.count - 1);  // 80 px at the right: the scale
  const y = (v) => H - pad - ((H - 2 * pad) * (v - lo)) / (hi - lo);
  const styles = getComputedStyle(document.documentElement);
  for (const [key, colour] of [["other", "--warn"], ["sr", "--accent"]]) {
    g.strokeStyle = styles.getPropertyValue(colour);
    g.lineWidth = 2;
    g.beginPath();
    let started = false;
    [...S.metrics.keys()].sort((a, b) => a - b).forEach((k) => {
      const v = S.metrics.get(k).psnr[key];
      if (v === null) return;
      if (started) g.lineTo(x(k), y(v)); else g.moveTo(x(k), y(v));
      started = true;
    });
    g.stroke();
  }
  g.strokeStyle = styles.getPropertyValue("--dim");
  g.beginPath();
  g.moveTo(x(S.n), 0);
  g.lineTo(x(S.n), H);
  g.stroke();
  g.fillStyle = styles.getPropertyValue("--dim");
  g.font = "12px system-ui";
  g.textAlign = "right";  // the scale at the right edge, clear of the first frames' values
  g.fillText(`${hi.toFixed(2)} dB`, W - pad, 14);
  g.fillText(`${lo.toFixed(2)} dB`, W - pad, H - 4);
}

async function measureClip() {  // one frame at a time, while nobody is playing
  for (let k = 0; k < S.count; k++) {
    while (S.playing) await sleep(250);
    if (S.metrics.has(k)) continue;
    try { S.metrics.set(k, await getJSON(`/api/metrics/${k}`)); } catch { break; }
    drawPlot();
  }
}

// -- controls ------------------------------------------------------------------------------------
async function play() {
  if (S.playing) { S.playing = false; return; }
  S.playing = true;
  playBtn.textContent = "❚❚";
  if (S.n >= S.count - 1) await show(0);
  while (S.playing && S.n < S.count - 1) {
    const t0 = performance.now();
    await show(S.n + 1);
    const wait = 1000 / S.fps - (performance.now() - t0);  // the clip's rate, or as fast as frames come
    if (wait > 0) await sleep(wait);
  }
  S.playing = false;
  playBtn.textContent = "▶";
}

function setZoom(z) {
  S.zoom = z;
  for (const b of document.querySelectorAll("[data-zoom]")) b.setAttribute("aria-pressed", String(Number(b.dataset.zoom) === z));
  layout();
}

function setMode(mode) {
  S.mode = mode;
  stage.classList.toggle("side", mode === "side");
  stage.classList.toggle("wipe", mode === "wipe");
  $("mode-wipe").setAttribute("aria-pressed", String(mode === "wipe"));
  $("mode-side").setAttribute("aria-pressed", String(mode === "side"));
  layout();
}

function setWipe(fraction) {
  S.wipe = clamp(fraction, 0, 1);
  $("wipe").value = String(Math.round(S.wipe * 1000));
  layout();
}

function setLeft(view) {
  S.left = view;
  $("left").value = view;
  $("tag-a").textContent = view === "input" ? "input" : S.info.other.label;
  show(S.n);
}

let drag = null;
stage.addEventListener("pointerdown", (e) => {
  const r = paneB.getBoundingClientRect();
  const onLine = S.mode === "wipe" && Math.abs(e.clientX - r.left - S.wipe * r.width) < 8;
  drag = { wipe: onLine, x: e.clientX, y: e.clientY, cx: S.cx, cy: S.cy, z: Number(stage.dataset.z) };
  stage.setPointerCapture(e.pointerId);
  stage.classList.add("dragging");
  stage.focus();
});
stage.addEventListener("pointermove", (e) => {
  if (!drag) return;
  if (drag.wipe) {
    const r = paneB.getBoundingClientRect();
    setWipe((e.clientX - r.left) / r.width);
  } else {
    S.cx = drag.cx - (e.clientX - drag.x) / drag.z;
    S.cy = drag.cy - (e.clientY - drag.y) / drag.z;
    layout();
  }
});
const endDrag = () => { drag = null; stage.classList.remove("dragging"); };
stage.addEventListener("pointerup", endDrag);
stage.addEventListener("pointercancel", endDrag);

let scrubTimer = null;
scrub.addEventListener("input", () => {  // follow the thumb without asking for every frame passed
  clearTimeout(scrubTimer);
  scrubTimer = setTimeout(() => show(Number(scrub.value)), 60);
});
scrub.addEventListener("change", () => { clearTimeout(scrubTimer); show(Number(scrub.value)); });
$("wipe").addEventListener("input", (e) => setWipe(Number(e.target.value) / 1000));
$("mode-wipe").addEventListener("click", () => setMode("wipe"));
$("mode-side").addEventListener("click", () => setMode("side"));
$("left").addEventListener("change", (e) => setLeft(e.target.value));
$("prev").addEventListener("click", () => show(S.n - 1));
$("next").addEventListener("click", () => show(S.n + 1));
playBtn.addEventListener("click", play);
for (const b of document.querySelectorAll("[data-zoom]")) b.addEventListener("click", () => setZoom(Number(b.dataset.zoom)));
window.addEventListener("resize", layout);

const KEYS = {
  ArrowLeft: (e) => show(S.n - (e.shiftKey ? 10 : 1)), ArrowRight: (e) => show(S.n + (e.shiftKey ? 10 : 1)),
  Home: () => show(0), End: () => show(S.count - 1), " ": () => play(),
  1: () => setZoom(1), 2: () => setZoom(2), 3: () => setZoom(4), 4: () => setZoom(0), 0: () => setZoom(0),
  w: () => setMode("wipe"), s: () => setMode("side"),
};
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const action = KEYS[e.key];
  if (!action) return;
  e.preventDefault();  // the focused slider or button must not act on the key too
  action(e);
});

async function start() {
  const i = (S.info = await getJSON("/api/info"));
  S.count = i.input.frames;
  S.fps = i.input.fps || 25;
  S.out = i.sr.out_size;
  scrub.max = String(S.count - 1);
  $("title").textContent = `${i.input.name} — ${i.sr.label} (${i.sr.backend}) vs ${i.other.label}`;
  $("tag-a").textContent = i.other.label;
  $("tag-b").textContent = i.sr.label;
  $("legend-sr").textContent = i.sr.label;
  $("legend-other").textContent = i.other.label;
  if (i.noise_note) $("noise-note").textContent = `Noise: ${i.noise_note}.`;
  renderFacts();
  await show(0);
  document.body.dataset.ready = "1";
  if (i.reference) { $("plot-box").hidden = false; measureClip(); }
}

start().catch((err) => { $("title").textContent = `cannot load the preview: ${err.message}`; });
