// Small DOM helpers: figures, status lines, tables, the spending chart, errors in words.
export const $ = (id) => document.getElementById(id);
export const show = (id, visible = true) => {
  $(id).hidden = !visible;
};

/** Sets a status line; `kind` is "ok", "error" or "" (in progress). */
export function status(id, text, kind = "") {
  const line = $(id);
  line.textContent = text;
  line.className = `status ${kind}`;
}

/** Replaces a table's rows with `rows` (arrays of text or nodes). */
export function fillTable(id, rows) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement("tr");
      for (const cell of cells) {
        const td = document.createElement("td");
        td.append(cell instanceof Node ? cell : document.createTextNode(String(cell)));
        tr.append(td);
      }
      return tr;
    }),
  );
}

export function button(text, onClick, className = "secondary") {
  const element = document.createElement("button");
  element.textContent = text;
  element.className = className;
  element.addEventListener("click", onClick);
  return element;
}

/** Integers with thousands separators. */
export const number = (value) => Number(value).toLocaleString("en-US");
export const when = (unixSeconds) => new Date(unixSeconds * 1000).toLocaleString();

/** The cumulative spending of `rows` (newest first) over time, as an SVG polyline. */
export function drawSpending(svg, rows) {
  const ns = "http://www.w3.org/2000/svg";
  const points = [...rows].reverse();
  svg.replaceChildren();
  const label = (text, x, y, anchor = "start") => {
    const t = document.createElementNS(ns, "text");
    t.textContent = text;
    t.setAttribute("x", x);
    t.setAttribute("y", y);
    t.setAttribute("font-size", "11");
    t.setAttribute("text-anchor", anchor);
    svg.append(t);
  };
  if (points.length === 0) {
    label("No requests yet.", 300, 85, "middle");
    return;
  }
  let total = 0;
  const series = points.map((row) => [row.created_at, (total += row.cost)]);
  const [t0, t1] = [series[0][0], series.at(-1)[0]];
  const span = Math.max(t1 - t0, 1);
  const [left, right, top, bottom] = [50, 590, 10, 140];
  const x = (t) => left + ((t - t0) / span) * (right - left);
  const y = (v) => bottom - (v / Math.max(total, 1)) * (bottom - top);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2b5cab");
  line.setAttribute("stroke-width", "2");
  line.setAttribute("points", series.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
  svg.append(line);
  for (const [t, v] of series) {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(t).toFixed(1));
    dot.setAttribute("cy", y(v).toFixed(1));
    dot.setAttribute("r", "3");
    dot.setAttribute("fill", "#2b5cab");
    svg.append(dot);
  }
  label(number(total), left - 4, top + 8, "end");
  label("0", left - 4, bottom, "end");
  label(new Date(t0 * 1000).toLocaleString(), left, 155);
  label(new Date(t1 * 1000).toLocaleString(), right, 155, "end");
}

/** What went wrong, in words a person can act on. */
export function explain(error) {
  const message = String(error?.message ?? error);
  if (error?.name === "WalletSignMessageError" || error?.name === "WalletSignTransactionError" ||
      error?.name === "WalletConnectionError" || /reject|denied|cancel/i.test(message)) {
    return "The wallet declined: nothing was signed or sent.";
  }
  if (/insufficient (funds|lamports)|0x1\b|Attempt to debit an account but found no record/i.test(message)) {
    return "Not enough SOL in the wallet for this (and its fee).";
  }
  if (/Failed to fetch|NetworkError|fetch failed/i.test(message)) {
    return "The Solana RPC or the gateway is unreachable: check your connection and try again.";
  }
  return message;
}
