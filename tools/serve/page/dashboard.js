// The mmrec training dashboard: one column per run, live charts fed by the
// server's event stream (/api/events), config and checkpoints from /api/runs.
// Everything is served by the mmrec process itself: no request leaves it.
"use strict";

const CHARTS = [
  { title: "training loss", kind: "metric", series: [["loss", "#c33"], ["smooth_loss", "#333"]] },
  { title: "validation", kind: "metric", series: [["val_loss", "#36c"], ["val_bpb", "#3a3"]] },
  { title: "learning rate", kind: "metric", series: [["lr", "#a5c"]] },
  { title: "gradient norm", kind: "metric", series: [["grad_norm", "#c80"]] },
  { title: "tokens/s", kind: "metric", series: [["tokens_per_s", "#088"]] },
  { title: "peak memory (MB)", kind: "metric", series: [["peak_bytes", "#666", 1e-6]] },
];

const runs = new Map();  // name -> {el, charts: [{plot, data}], samples, status}
let dirty = false;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function addRun(info) {
  if (runs.has(info.name)) { updateInfo(info); return; }
  const box = el("div", "run");
  box.id = "run-" + info.name;
  box.appendChild(el("h2", "", info.name));
  const status = el("div", "status", "waiting for metrics…");
  box.appendChild(status);
  const charts = CHARTS.map((c) => {
    const div = el("div", "chart");
    box.appendChild(div);
    const data = [[]].concat(c.series.map(() => []));
    const opts = {
      title: c.title, width: 460, height: 160,
      scales: { x: { time: false } },
      series: [{ label: "step" }].concat(c.series.map(([key, color]) => ({ label: key, stroke: color, spanGaps: true }))),
      axes: [{}, { size: 60 }],
    };
    return { spec: c, data, plot: new uPlot(opts, data, div) };
  });
  box.appendChild(el("h3", "", "samples at each evaluation"));
  const samples = el("div", "samples");
  box.appendChild(samples);
  box.appendChild(el("h3", "", "checkpoints"));
  const ckpts = el("div", "checkpoints muted", "none yet");
  box.appendChild(ckpts);
  const det = el("details");
  det.appendChild(el("summary", "", "config"));
  const cfg = el("pre", "config", "");
  det.appendChild(cfg);
  box.appendChild(det);
  document.getElementById("runs").appendChild(box);
  runs.set(info.name, { charts, samples, status, ckpts, cfg, points: 0 });
  updateInfo(info);
}

function updateInfo(info) {
  const r = runs.get(info.name);
  if (!r) return;
  r.cfg.textContent = info.config ? JSON.stringify(info.config, null, 2) : "(no config.json in the run directory)";
  const list = info.checkpoints || [];
  r.ckpts.textContent = list.length
    ? list.map((c) => `${c.name} (${(c.bytes / 1e6).toFixed(1)} MB)`).join(", ") + (info.final_model ? "; final model.safetensors" : "")
    : "none yet";
}

function addMetric(m) {
  const r = runs.get(m.run);
  if (!r) return;
  for (const ch of r.charts) {
    const vals = ch.spec.series.map(([key, , scale]) => (typeof m[key] === "number" ? m[key] * (scale || 1) : null));
    if (vals.every((v) => v === null)) continue;
    ch.data[0].push(m.step);
    vals.forEach((v, i) => ch.data[i + 1].push(v));
    r.points++;
  }
  if (typeof m.loss === "number")
    r.status.textContent = `step ${m.step} | loss ${m.loss.toFixed(4)} | lr ${m.lr.toExponential(2)} | ` +
      `${Math.round(m.tokens_per_s)} tok/s`;
  dirty = true;
}

function resetRun(name) {
  const r = runs.get(name);
  if (!r) return;
  for (const ch of r.charts) ch.data.forEach((a) => (a.length = 0));
  r.samples.textContent = "";
  r.points = 0;
  dirty = true;
}

function addSample(s) {
  const r = runs.get(s.run);
  if (!r) return;
  const d = el("div", "sample");
  d.textContent = `step ${s.step}: ${s.prompt}${s.text}`;
  r.samples.prepend(d);
  while (r.samples.childNodes.length > 5) r.samples.removeChild(r.samples.lastChild);
}

function totalPoints() {
  let n = 0;
  for (const r of runs.values()) n += r.points;
  return n;
}

function redraw() {
  if (dirty) {
    dirty = false;
    for (const r of runs.values()) for (const ch of r.charts) ch.plot.setData(ch.data);
    document.getElementById("points").textContent = `${totalPoints()} points`;
  }
  setTimeout(redraw, 250);
}

function refreshInfo() {
  fetch("/api/runs").then((r) => r.json()).then((j) => {
    j.runs.forEach(addRun);
    document.getElementById("stopbox").hidden = !j.stoppable;  // only beside a training run
  }).catch(() => {});
  setTimeout(refreshInfo, 5000);
}

// Stopping the run (mmrec-train --dashboard): the token it printed, checked by
// the server; the run then checkpoints and exits as on Ctrl-C.
function stopRun() {
  const msg = document.getElementById("stopmsg");
  const token = document.getElementById("token").value.trim();
  fetch("/api/stop", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }) })
    .then((r) => r.json().then((j) => (msg.textContent = r.ok ? j.message : j.error.message)))
    .catch(() => (msg.textContent = "the dashboard did not answer"));
}
document.getElementById("stop").addEventListener("click", stopRun);

const events = new EventSource("/api/events");
events.addEventListener("open", () => {
  // A (re)connected stream sends every line from the start again.
  for (const name of runs.keys()) resetRun(name);
  document.getElementById("conn").textContent = "live";
});
events.addEventListener("error", () => (document.getElementById("conn").textContent = "reconnecting…"));
events.addEventListener("run", (e) => addRun(JSON.parse(e.data)));
events.addEventListener("metric", (e) => addMetric(JSON.parse(e.data)));
events.addEventListener("sample", (e) => addSample(JSON.parse(e.data)));
events.addEventListener("reset", (e) => { const j = JSON.parse(e.data); if (j.kind === "metric") resetRun(j.run); });

// For tests and scripts: the number of points drawn so far, and the runs shown.
window.mmrecDashboard = { points: totalPoints, runs: () => Array.from(runs.keys()) };
redraw();
refreshInfo();
