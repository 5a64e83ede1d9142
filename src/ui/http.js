// Reading the API: one GET, with the server's own sentence on failure,
// and the collector's bearer token when it asks for one.

const TOKEN_KEY = "sidetrace.token";
let asking = null;

function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Asks once for the token, however many requests were refused. */
function askToken() {
  asking ??= new Promise((resolve) => {
    const dialog = document.getElementById("token");
    const input = document.getElementById("token-input");
    dialog.addEventListener(
      "close",
      () => {
        const t = input.value.trim();
        try {
          if (t) sessionStorage.setItem(TOKEN_KEY, t);
        } catch {
          // Storage refused: the token lasts as long as this page.
        }
        asking = null;
        resolve(t || null);
      },
      { once: true },
    );
    input.value = "";
    dialog.showModal();
  });
  return asking;
}

/** GET a JSON document; a non-2xx answer throws its `error` sentence. */
export async function getJSON(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v == null || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) if (one !== "") q.append(k, one);
  }
  const url = q.toString() ? `${path}?${q}` : path;
  const send = async (bearer) => {
    const headers = { accept: "application/json" };
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    try {
      return await fetch(url, { headers });
    } catch (e) {
      throw new Error(`${path}: the server did not answer (${e.message})`);
    }
  };
  let r = await send(token());
  if (r.status === 401 && r.headers.get("www-authenticate")?.startsWith("Bearer")) {
    const t = await askToken();
    if (t) r = await send(t);
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
