// streamsr camera wall: polls /api/cameras once a second; a tile per camera with its latest
// picture (a JPEG made on request, about once a second), rates, latency sparkline and state.
"use strict";

const POLL_MS = 1000, SPARK_POINTS = 120;
const LABELS = { running: "connected", connecting: "connecting", reconnecting: "reconnecting", failed: "failed",
  done: "done", stopping: "stopping", starting: "starting" };
const tiles = new Map();  // index -> {el, last sample, history, picture state}

function text(el, cls, value) { el.querySelector(cls).textContent = value; }
const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`);

function makeTile(cam) {
  const el = document.getElementById("tile").content.firstElementChild.cloneNode(true);
  el.dataset.index = String(cam.index);
  el.addEventListener("click", () => {
    el.classList.toggle("with-input");
    const t = tiles.get(cam.index);
    t.inputSeq = -1;  // load the input now
    refreshPictures(t, t.cam);
  });
  document.getElementById("wall").append(el);
  document.getElementById("empty").hidden = true;
  return { el, prev: null, history: [], outputSeq: -1, inputSeq: -1, shown: 0, cam };
}

async function loadInto(img, url, then) {  // one request per picture; the old one is let go
  try {
    const r = await fetch(url);
    if (!r.ok) return;
    const old = img.src;
    img.src = URL.createObjectURL(await r.blob());
    await img.decode();
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    then();
  } catch {
    // the run ended or the picture is not there yet: the next poll asks again
  }
}

function refreshPictures(t, cam) {
  const seq = cam.frames_out + cam.frames_in * 1e6;  // anything new since the last picture
  if (cam.output_size && cam.frames_out !== t.outputSeq) {
    t.outputSeq = cam.frames_out;
    loadInto(t.el.querySelector("img.output"), `/snapshot/${cam.index}?view=output&n=${cam.frames_out}`, () => {
      t.shown += 1;
      t.el.dataset.snapshots = String(t.shown);
    });
  }
  if (t.el.classList.contains("with-input") && cam.input_size && seq !== t.inputSeq) {
    t.inputSeq = seq;
    loadInto(t.el.querySelector("img.input"), `/snapshot/${cam.index}?view=input&n=${cam.frames_in}`, () => {});
  }
}

function sparkline(canvas, history) {
  const g = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  g.clearRect(0, 0, W, H);
  const values = history.flatMap((h) => [h.p50, h.p95]).filter((v) => v !== null);
  if (!values.length) return;
  const hi = Math.max(...values) * 1.1 || 1;
  const styles = getComputedStyle(document.documentElement);
  for (const [key, colour] of [["p95", "--warn"], ["p50", "--accent"]]) {
    g.strokeStyle = styles.getPropertyValue(colour);
    g.lineWidth = 2;
    g.beginPath();
    let started = false;
    history.forEach((h, k) => {  // the newest sample at the right edge
      if (h[key] === null) return;
      const x = (W * (k + SPARK_POINTS - history.length)) / (SPARK_POINTS - 1);
      const y = H - 2 - ((H - 4) * h[key]) / hi;
      if (started) g.lineTo(x, y); else g.moveTo(x, y);
      started = true;
    });
    g.stroke();
  }
  g.fillStyle = styles.getPropertyValue("--dim");
  g.font = "11px system-ui";
  g.textAlign = "right";  // the scale at the left, the newest samples at the right
  g.fillText(`${Math.round(hi)} ms`, 40, 11);
}

function update(cam, now) {
  if (!tiles.has(cam.index)) tiles.set(cam.index, makeTile(cam));
  const t = tiles.get(cam.index), el = t.el;
  t.cam = cam;
  el.dataset.state = cam.state;
  text(el, ".name", cam.name);
  text(el, ".state", LABELS[cam.state] || cam.state);
  if (t.prev) {  // rates over the last poll, not since the start
    const dt = (now - t.prev.t) / 1000;
    if (dt > 0) {
      text(el, ".fps-in", ((cam.frames_in - t.prev.frames_in) / dt).toFixed(1));
      text(el, ".fps-out", ((cam.frames_out - t.prev.frames_out) / dt).toFixed(1));
    }
  }
  t.prev = { t: now, frames_in: cam.frames_in, frames_out: cam.frames_out };
  text(el, ".frames-in", String(cam.frames_in));
  text(el, ".frames-out", String(cam.frames_out));
  text(el, ".dropped", String(cam.dropped));
  text(el, ".reconnects", String(cam.reconnects));
  text(el, ".p50", ms(cam.latency.p50_ms));
  text(el, ".p95", ms(cam.latency.p95_ms));
  text(el, ".noise", cam.noise === null ? "–" : cam.noise.toFixed(1));
  text(el, ".error", cam.error || "");
  t.history.push({ p50: cam.latency.p50_ms, p95: cam.latency.p95_ms });
  if (t.history.length > SPARK_POINTS) t.history.shift();
  sparkline(el.querySelector("canvas.spark"), t.history);
  refreshPictures(t, cam);
}

async function poll() {
  try {
    const r = await fetch("/api/cameras");
    const cams = await r.json();
    const now = performance.now();
    cams.forEach((cam) => update(cam, now));
    const live = cams.filter((c) => c.state === "running").length;
    document.getElementById("summary").textContent = `${cams.length} camera(s), ${live} connected · ${new Date().toLocaleTimeString()}`;
  } catch {
    document.getElementById("summary").textContent = "the run has ended (no answer from streamsr)";
  }
  setTimeout(poll, POLL_MS);
}

poll();
