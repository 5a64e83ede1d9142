// Reading the API: one GET, with the server's own sentence on failure.

/** GET a JSON document; a non-2xx answer throws its `error` sentence. */
export async function getJSON(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v == null || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) if (one !== "") q.append(k, one);
  }
  const url = q.toString() ? `${path}?${q}` : path;
  let r;
  try {
    r = await fetch(url, { headers: { accept: "application/json" } });
  } catch (e) {
    throw new Error(`${path}: the server did not answer (${e.message})`);
  }
  const text = await r.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // An error page in plain text; its first line is the reason.
  }
  if (!r.ok) {
    const why = body?.error ?? text.split("\n")[0] ?? r.statusText;
    const err = new Error(why || `${path}: HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
  return body;
}
