"""The one web page the API serves at ``GET /``: upload a CSV, see the flagged rows and the scores.

Plain HTML and JavaScript (no external scripts: the page works without internet). It posts the
file to ``/predict/csv`` (with the API key when one is typed in), then shows a histogram of all
scores with the threshold and a table of the flagged rows, highest score first, each beside its own
record (the CSV is split into records as the server reads it: a quoted field may hold line breaks).
Clicking a flagged row shows why it was flagged: its top columns (``?explain=``) as a small bar chart.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>netad: score network records</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; } .muted { color: #666; }
  form { display: flex; gap: .75rem; align-items: center; flex-wrap: wrap; margin: 1rem 0; }
  #status { margin: .5rem 0; min-height: 1.4em; } #status.error { color: #b00020; }
  canvas { border: 1px solid #ddd; max-width: 100%; }
  table { border-collapse: collapse; margin-top: 1rem; width: 100%; font-size: .9rem; }
  th, td { border-bottom: 1px solid #eee; padding: .3rem .5rem; text-align: left; }
  td.score { font-variant-numeric: tabular-nums; }
  td.record { font-family: monospace; word-break: break-all; white-space: pre-wrap; }
  tr.flagged-row { cursor: pointer; } tr.flagged-row:hover { background: #f6f8ff; }
  tr.why td { background: #fafafa; } .why-title { margin: .2rem 0 .4rem; }
  .bar { display: grid; grid-template-columns: 16rem 1fr 6rem; gap: .5rem; align-items: center; margin: .15rem 0; }
  .bar .name { font-family: monospace; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar .track { background: #eee; height: .8rem; } .bar .fill { display: block; height: 100%; }
  .bar .fill.up { background: #d9534f; } .bar .fill.down { background: #5b8def; }
  .bar .num { font-variant-numeric: tabular-nums; text-align: right; }
</style>
</head>
<body>
<h1>Score network records <span class="muted">with model <code>__MODEL__</code></span></h1>
<p class="muted">Upload a CSV file of records in the model's columns (the label column may be present;
it is ignored). Rows at or above the model's threshold are flagged; click one to see why.</p>
<form id="form">
  <input type="file" id="file" accept=".csv,.txt,text/csv" required>
  <input type="password" id="key" placeholder="API key (if the server needs one)" autocomplete="off">
  <button type="submit" id="score">Score</button>
</form>
<div id="status" role="status"></div>
<canvas id="histogram" width="720" height="220" hidden></canvas>
<table id="flagged" hidden>
  <thead><tr><th>row</th><th>score</th><th>record</th></tr></thead>
  <tbody></tbody>
</table>
<script>
"use strict";
const BINS = 20, MAX_ROWS = 1000, EXPLAIN = 5;
const $ = (id) => document.getElementById(id);

function say(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function histogram(scores, threshold) {
  const counts = new Array(BINS).fill(0);
  for (const s of scores) counts[Math.min(BINS - 1, Math.floor(s * BINS))]++;
  const canvas = $("histogram"), ctx = canvas.getContext("2d");
  canvas.hidden = false;
  canvas.dataset.counts = JSON.stringify(counts);
  canvas.dataset.threshold = String(threshold);
  const W = canvas.width, H = canvas.height, left = 50, bottom = 30, top = 20;
  const plotW = W - left - 10, plotH = H - bottom - top, peak = Math.max(1, ...counts);
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px sans-serif";
  counts.forEach((c, i) => {
    const x = left + (i / BINS) * plotW, h = (c / peak) * plotH;
    ctx.fillStyle = (i + 1) / BINS > threshold ? "#d9534f" : "#5b8def";
    ctx.fillRect(x + 1, top + plotH - h, plotW / BINS - 2, h);
  });
  ctx.fillStyle = "#222";
  ctx.fillText("0", left - 3, H - 10); ctx.fillText("1", left + plotW - 6, H - 10);
  ctx.fillText("score", left + plotW / 2 - 15, H - 8); ctx.fillText(String(peak), 5, top + 10);
  const tx = left + threshold * plotW;
  ctx.strokeStyle = "#222"; ctx.setLineDash([5, 4]);
  ctx.beginPath(); ctx.moveTo(tx, top - 5); ctx.lineTo(tx, top + plotH); ctx.stroke(); ctx.setLineDash([]);
  ctx.fillText("threshold " + threshold.toFixed(3), Math.min(tx + 4, W - 110), top);
}

// The records of a CSV text, as the server's reader sees them: a field that starts with a quote runs to
// the closing quote ("" inside it is a quote), line breaks (LF, CRLF, CR) in it included; a quote later
// in a field is a character; blank lines hold no record. Each record's text, without its line break.
function csvRecords(text) {
  const records = [];
  let start = 0, quoted = false, fieldStart = true;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') i++; else quoted = false;
      }
    } else if (c === "\\n" || c === "\\r") {
      if (i > start) records.push(text.slice(start, i));
      if (c === "\\r" && text[i + 1] === "\\n") i++;
      start = i + 1; fieldStart = true;
    } else if (c === ",") {
      fieldStart = true;
    } else {
      quoted = fieldStart && c === '"';
      fieldStart = false;
    }
  }
  if (start < text.length) records.push(text.slice(start));
  return records;
}

// Why one row was flagged: a bar per top column, its length the contribution's size against the largest
// (red pushes towards "anomaly", blue away), shown in a row under the clicked one; a second click hides it.
function why(tr, p) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains("why")) { next.remove(); return; }
  const detail = document.createElement("tr"), td = document.createElement("td");
  detail.className = "why"; td.colSpan = 3; detail.appendChild(td);
  const title = document.createElement("div");
  title.className = "why-title muted";
  if (!p.explanation) {
    title.textContent = "This model gives no explanations (it was trained before netad explained scores).";
    td.appendChild(title); tr.after(detail); return;
  }
  title.textContent = p.explained_by === "novelty"
    ? "Flagged by the novelty detector: each column's share of the novelty score"
    : "Each column's push on the classifier's logit, against a typical normal training row";
  td.appendChild(title);
  const peak = Math.max(1e-12, ...p.explanation.map((e) => Math.abs(e.contribution)));
  for (const e of p.explanation) {
    const bar = document.createElement("div"), name = document.createElement("span");
    const track = document.createElement("span"), fill = document.createElement("span");
    const num = document.createElement("span");
    bar.className = "bar"; bar.dataset.column = e.column; bar.dataset.contribution = String(e.contribution);
    name.className = "name"; name.textContent = e.column + " = " + (e.value === null ? "(gap)" : String(e.value));
    name.title = name.textContent;
    track.className = "track"; fill.className = "fill " + (e.contribution >= 0 ? "up" : "down");
    fill.style.width = (100 * Math.abs(e.contribution) / peak).toFixed(1) + "%";
    num.className = "num"; num.textContent = (e.contribution >= 0 ? "+" : "") + e.contribution.toFixed(3);
    track.appendChild(fill); bar.append(name, track, num); td.appendChild(bar);
  }
  tr.after(detail);
}

function table(body, records) {
  const preds = body.predictions;
  const offset = records.length > preds.length ? 1 : 0;  // a header record above the data
  const flagged = preds.map((p, i) => ({row: i + 1, score: p.score, flagged: p.is_anomaly, p}))
                       .filter((p) => p.flagged).sort((a, b) => b.score - a.score);
  const tbody = $("flagged").querySelector("tbody");
  tbody.replaceChildren();
  for (const p of flagged.slice(0, MAX_ROWS)) {
    const tr = document.createElement("tr");
    tr.className = "flagged-row"; tr.title = "click: why was it flagged?";
    for (const [cls, text] of [["row", String(p.row)], ["score", p.score.toFixed(6)],
                               ["record", (records[p.row - 1 + offset] || "").slice(0, 200)]]) {
      const td = document.createElement("td");
      td.className = cls; td.textContent = text; tr.appendChild(td);
    }
    tr.addEventListener("click", () => why(tr, p.p));
    tbody.appendChild(tr);
  }
  $("flagged").hidden = false;
  return flagged.length;
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) { say("Choose a CSV file first.", true); return; }
  say("Scoring " + file.name + " ...");
  const headers = $("key").value ? {"X-API-Key": $("key").value} : {};
  const post = (query) => {
    const form = new FormData();
    form.append("file", file);
    return fetch("predict/csv" + query, {method: "POST", body: form, headers});
  };
  try {
    let response = await post("?explain=" + EXPLAIN);
    let body = await response.json();
    if (!response.ok && body.field === "explain") {  // fewer columns than EXPLAIN, or a model that cannot explain
      const columns = (body.error.match(/from 1 to (\d+)/) || [])[1];
      response = await post(columns ? "?explain=" + columns : "");
      body = await response.json();
    }
    if (!response.ok) {
      const where = body.field ? " (field " + body.field + ")" : (body.record !== undefined ? " (row " + (body.record + 1) + ")" : "");
      say("Error " + response.status + ": " + body.error + where + (body.reason ? ": " + body.reason : ""), true);
      return;
    }
    const records = csvRecords(await file.text());
    histogram(body.predictions.map((p) => p.score), body.threshold);
    const n = table(body, records);
    say(n + " of " + body.predictions.length + " rows flagged (threshold " + body.threshold.toFixed(4) + ", "
        + body.processing_time_ms.toFixed(1) + " ms)" + (n > MAX_ROWS ? "; the table shows the top " + MAX_ROWS : "")
        + (body.warnings.length ? "; " + body.warnings.length + " unseen-category warnings" : ""));
    document.body.dataset.done = "1";
  } catch (err) {
    say("Request failed: " + err, true);
  }
});
</script>
</body>
</html>
"""
