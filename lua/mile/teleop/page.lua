--- mile.teleop.page: the page `mile teleop` serves (one self-contained HTML file, no
--- external resources). Protocol (docs/teleop.md): binary frames = uint32 LE length of
--- a JSON header, the header, RGB bytes; text = JSON {type = hello | status | metrics |
--- note}. The page sends {type = "input", keys = [codes], pad = {axes, buttons}},
--- {type = "pause", value}, {type = "speed", value}, {type = "step"}.
--- window.teleop holds what tests read: frame arrival times, the last header, the
--- measured takeover latencies.
return [==[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mile teleop</title>
<style>
body { background: #1b1d22; color: #e6e6e6; font: 14px system-ui, sans-serif; margin: 0; display: flex; gap: 16px; padding: 12px; }
#stage { position: relative; border: 4px solid #2b2f38; line-height: 0; }
#stage.takeover { border-color: #e0443e; }
canvas#view { image-rendering: pixelated; background: #000; }
#overlay { position: absolute; left: 8px; top: 8px; line-height: 1.35; background: rgba(0,0,0,.55); padding: 6px 9px; border-radius: 4px; font-variant-numeric: tabular-nums; }
#banner { position: absolute; left: 0; right: 0; top: 45%; text-align: center; font-size: 26px; line-height: 1.2; text-shadow: 0 0 6px #000; }
#gauge { width: 160px; height: 10px; background: #444; border-radius: 5px; overflow: hidden; display: inline-block; vertical-align: middle; }
#gaugefill { height: 100%; width: 0; background: linear-gradient(90deg, #4caf50, #ffc107, #e53935); }
#side { width: 330px; }
#side h2 { font-size: 15px; margin: 6px 0; }
#progress { width: 100%; height: 8px; background: #333; border-radius: 4px; overflow: hidden; }
#progressfill { height: 100%; width: 0; background: #4f8cff; }
#keys { padding-left: 18px; margin: 4px 0; }
#notes { color: #ffb74d; min-height: 1.2em; }
svg { background: #23262d; border-radius: 4px; }
.role { padding: 1px 6px; border-radius: 3px; background: #3a6; color: #fff; }
.role.watcher { background: #777; }
</style></head>
<body>
<div id="stage"><canvas id="view" width="600" height="400"></canvas>
  <div id="overlay">
    <div><span id="role" class="role">connecting</span> <span id="task"></span></div>
    <div>round <b id="round">-</b> &middot; episode <b id="episode">-</b> &middot; step <b id="step">-</b></div>
    <div><span id="ilabel">your interventions</span>: <b id="interventions">0</b> &middot; speed <b id="speed">1</b>x <b id="pausedflag"></b></div>
    <div><span id="plabel">learner p(s)</span> <span id="gauge"><span id="gaugefill" style="display:block"></span></span> <b id="pval">-</b></div>
  </div>
  <div id="banner"></div>
</div>
<div id="side">
  <h2>status</h2><div id="status">connecting...</div>
  <div id="progress"><div id="progressfill"></div></div>
  <h2>success rate by round</h2>
  <svg id="curve" width="330" height="150"></svg>
  <h2>keys</h2><ul id="keys"></ul>
  <div id="notes"></div>
</div>
<script>
"use strict";
const T = window.teleop = { frames: 0, frameTimes: [], meta: null, latencies: [], role: null, notes: [], status: null,
  metrics: [], open: false, keyDownAt: null, replay: [] };
const $ = (id) => document.getElementById(id);
const canvas = $("view"), ctx = canvas.getContext("2d");
let image = null;
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + location.search);
ws.binaryType = "arraybuffer";
const send = (obj) => { if (ws.readyState === 1) ws.send(JSON.stringify(obj)); };
T.send = send;
ws.onopen = () => { T.open = true; send({ type: "hello" }); };
ws.onclose = () => { T.open = false; $("status").textContent = "disconnected (reload to reconnect)"; $("role").textContent = "offline"; };

function drawFrame(buf) {
  const dv = new DataView(buf);
  const n = dv.getUint32(0, true);
  const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const rgb = new Uint8Array(buf, 4 + n);
  if (!image || image.width !== meta.w || image.height !== meta.h) {
    canvas.width = meta.w; canvas.height = meta.h;
    canvas.style.width = Math.max(600, meta.w) + "px"; // small (software-rendered) frames scaled up
    image = ctx.createImageData(meta.w, meta.h);
    image.data.fill(255);
  }
  const px = image.data;
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) { px[i] = rgb[j]; px[i + 1] = rgb[j + 1]; px[i + 2] = rgb[j + 2]; }
  ctx.putImageData(image, 0, 0);
  T.frames++; T.frameTimes.push(performance.now()); if (T.frameTimes.length > 5000) T.frameTimes.shift();
  T.meta = meta; if (!T.firstMeta) T.firstMeta = meta;
  if (meta.nu_last === 1 && T.keyDownAt !== null) { T.latencies.push(performance.now() - T.keyDownAt); T.keyDownAt = null; }
  $("round").textContent = meta.round + "/" + meta.rounds;
  $("episode").textContent = meta.episode + "/" + meta.episodes;
  $("step").textContent = meta.step;
  $("interventions").textContent = meta.interventions;
  $("speed").textContent = meta.speed;
  $("pausedflag").textContent = meta.paused ? "PAUSED" : "";
  $("pval").textContent = meta.p.toFixed(3);
  $("gaugefill").style.width = (100 * Math.max(0, Math.min(1, meta.p))) + "%";
  $("banner").textContent = meta.paused ? (meta.controller ? "paused (P to resume)" : "waiting for the controlling browser") : "";
  if (meta.controller) paused = meta.paused; // the server's state: P toggles it (mile replay --paused starts paused)
  if (meta.replay) { // mile replay: the recorded intervention steps (nu = 1) highlighted
    $("stage").classList.toggle("takeover", meta.nu === 1);
    $("ilabel").textContent = "interventions so far"; $("plabel").textContent = "recorded p";
    if (meta.nu === 1 && !meta.paused) $("banner").textContent = "intervention (nu = 1)";
    T.replay.push([meta.step, meta.nu]);
  }
}

function drawCurve(rows) {
  const svg = $("curve"), W = 330, H = 150, pad = 24;
  if (!rows.length) { svg.innerHTML = ""; return; }
  const maxR = Math.max(1, rows[rows.length - 1].round);
  const x = (r) => pad + (W - 2 * pad) * r / maxR, y = (s) => H - pad - (H - 2 * pad) * s;
  let pts = rows.map((r) => x(r.round) + "," + y(r.success)).join(" ");
  svg.innerHTML = `<line x1="${pad}" y1="${y(0)}" x2="${W - pad}" y2="${y(0)}" stroke="#666"/>` +
    `<line x1="${pad}" y1="${y(1)}" x2="${W - pad}" y2="${y(1)}" stroke="#444"/>` +
    `<text x="2" y="${y(1) + 4}" fill="#aaa" font-size="10">1</text><text x="2" y="${y(0) + 4}" fill="#aaa" font-size="10">0</text>` +
    `<polyline points="${pts}" fill="none" stroke="#4f8cff" stroke-width="2"/>` +
    rows.map((r) => `<circle cx="${x(r.round)}" cy="${y(r.success)}" r="3" fill="#4f8cff"><title>round ${r.round}: ${r.success}</title></circle>`).join("");
}

ws.onmessage = (ev) => {
  if (typeof ev.data !== "string") { drawFrame(ev.data); return; }
  const m = JSON.parse(ev.data);
  if (m.type === "hello") {
    T.role = m.role; T.hello = m;
    $("role").textContent = m.role; $("role").className = "role " + m.role;
    $("task").textContent = m.task;
    $("keys").innerHTML = m.keymap.map((l) => "<li>" + l.replace(/&/g, "&amp;").replace(/</g, "&lt;") + "</li>").join("");
  } else if (m.type === "status") {
    T.status = m;
    $("status").textContent = m.text + (m.phase === "training" && m.progress != null ? ` (${Math.round(100 * m.progress)}%)` : "");
    $("progressfill").style.width = (m.progress != null ? 100 * m.progress : 0) + "%";
  } else if (m.type === "metrics") {
    T.metrics = m.rows; drawCurve(m.rows);
  } else if (m.type === "note") {
    T.notes.push(m.text); $("notes").textContent = m.text;
  }
};

// ---- input: keys held now (KeyboardEvent.code), the first gamepad ----
const held = new Set();
const CONTROL = new Set(["KeyP", "Digit1", "Digit2", "Digit3", "Period"]);
let paused = false, lastPad = "";
function padState() {
  const pads = navigator.getGamepads ? navigator.getGamepads() : [];
  for (const p of pads) if (p) return { axes: p.axes.map((v) => Math.round(v * 100) / 100), buttons: p.buttons.map((b) => b.pressed) };
  return null;
}
function sendInput() { send({ type: "input", keys: Array.from(held), pad: padState(), t: performance.now() }); }
window.addEventListener("keydown", (e) => {
  if (e.repeat) { e.preventDefault(); return; }
  if (CONTROL.has(e.code)) {
    if (e.code === "KeyP") { paused = !paused; send({ type: "pause", value: paused }); }
    else if (e.code === "Period") send({ type: "step" });
    else send({ type: "speed", value: { Digit1: 0.25, Digit2: 0.5, Digit3: 1 }[e.code] });
    return;
  }
  if (e.code.startsWith("Arrow") || e.code === "Space") e.preventDefault();
  if (e.code === "Space" && !held.has("Space")) T.keyDownAt = performance.now();
  held.add(e.code); $("stage").classList.toggle("takeover", held.has("Space")); sendInput();
});
window.addEventListener("keyup", (e) => {
  if (!held.has(e.code)) return;
  held.delete(e.code); $("stage").classList.toggle("takeover", held.has("Space")); sendInput();
});
window.addEventListener("blur", () => { if (held.size) { held.clear(); $("stage").classList.remove("takeover"); sendInput(); } });
function pollPad() {
  const p = padState(), s = JSON.stringify(p);
  if (p && s !== lastPad) { lastPad = s; sendInput(); }
  requestAnimationFrame(pollPad);
}
requestAnimationFrame(pollPad);
</script></body></html>
]==]
