// rill serve's page: submit a job, follow its server-sent events, show each x̂0 preview with its σ.
"use strict";
const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => (token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url);
const headers = token ? { "X-Rill-Token": token } : {};
const $ = (id) => document.getElementById(id);
let current = null;
let source = null;

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "err" : "";
}

async function loadOptions() {
  const r = await fetch(withToken("api/options"), { headers });
  const o = await r.json();
  for (const m of o.models) $("model").add(new Option(m, m));
  for (const s of o.samplers) $("sampler").add(new Option(s, s));
  $("nfe").max = o.limits.nfe;
}

function chooseModel() {  // digits when the prompt talks about digits or numbers, as `rill generate` does
  const p = $("prompt").value.toLowerCase();
  const digit = /(^|[^a-z0-9])(\d|digit|digits|number|numeral|handwritten|zero|one|two|three|four|five|six|seven|eight|nine)([^a-z0-9]|$)/;
  const want = digit.test(p) ? "digits" : "shapes";
  if ([...$("model").options].some((o) => o.value === want)) $("model").value = want;
}

function finish(text, error) {
  status(text, error);
  $("go").disabled = false;
  $("cancel").disabled = true;
  if (source) source.close();
  source = null;
}

async function submit(ev) {
  ev.preventDefault();
  $("previews").innerHTML = "";
  $("final").innerHTML = "";
  const body = {
    prompt: $("prompt").value, negative: $("negative").value, model: $("model").value,
    sampler: $("sampler").value, nfe: parseInt($("nfe").value, 10), seed: parseInt($("seed").value, 10),
  };
  if ($("guidance").value !== "") body.guidance = parseFloat($("guidance").value);
  $("go").disabled = true;
  const t0 = performance.now();
  const r = await fetch(withToken("api/jobs"), {
    method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await r.json();
  if (r.status !== 202) return finish(answer.error || "refused (" + r.status + ")", true);
  current = answer.id;
  $("cancel").disabled = false;
  status("queued");
  source = new EventSource(withToken("api/jobs/" + current + "/events"));
  source.addEventListener("step", (e) => {
    const d = JSON.parse(e.data);
    const fig = document.createElement("figure");
    const img = new Image();
    img.src = d.preview;
    img.className = "preview";
    img.alt = "x̂0 at σ " + d.sigma;
    const cap = document.createElement("figcaption");
    cap.textContent = "σ " + d.sigma.toPrecision(3);
    fig.append(img, cap);
    $("previews").append(fig);
    if (!window.firstPreviewMs) window.firstPreviewMs = performance.now() - t0;
    status("step " + (d.step + 1) + " of " + body.nfe + " calls at most, σ = " + d.sigma.toPrecision(3));
  });
  source.addEventListener("done", (e) => {
    const d = JSON.parse(e.data);
    for (const im of d.images) {
      const url = withToken("api/images/" + im.id + ".png");
      const img = new Image();
      img.src = url;
      img.id = "result";
      img.alt = "the generated image";
      const a = document.createElement("a");
      a.href = url;
      a.download = "rill-seed" + im.seed + ".png";
      a.id = "download";
      a.textContent = "Download PNG";
      $("final").append(img, document.createElement("br"), a);
    }
    finish("done in " + d.seconds.toFixed(2) + " s");
  });
  for (const kind of ["cancelled", "timeout", "error"]) {
    source.addEventListener(kind, (e) => finish(JSON.parse(e.data).message, kind !== "cancelled"));
  }
}

async function cancel() {
  if (!current) return;
  await fetch(withToken("api/jobs/" + current + "/cancel"), { method: "POST", headers });
}

$("form").addEventListener("submit", submit);
$("cancel").addEventListener("click", cancel);
$("prompt").addEventListener("change", chooseModel);
loadOptions().then(chooseModel);
