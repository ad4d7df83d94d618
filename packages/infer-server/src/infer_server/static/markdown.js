// A small Markdown renderer for assistant replies that builds DOM nodes.
// Escaped by construction: text only ever enters the page through
// createTextNode / textContent, never as HTML, and no URL is followed (links
// are shown as text), so a reply cannot inject markup, script or style.
// Supports: fenced code blocks, headings, bullet and numbered lists, tables,
// blockquotes, paragraphs; inline code, **bold**, *italic*.

const FENCE = /^\s*```\s*([\w+-]*)\s*$/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d+[.)]\s+(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/;
const INLINE = /(`[^`]+`|\*\*[^*]+\*\*|\*[^*\s][^*]*\*)/;

function cells(line) {
  let text = line.trim();
  if (text.startsWith("|")) text = text.slice(1);
  if (text.endsWith("|")) text = text.slice(0, -1);
  return text.split("|").map((c) => c.trim());
}

/** Appends `text` with inline code, bold and italic as nodes to `parent`. */
function inline(doc, parent, text) {
  for (const part of text.split(INLINE)) {
    if (!part) continue;
    let node;
    if (part.length > 2 && part.startsWith("`") && part.endsWith("`")) {
      node = doc.createElement("code");
      node.textContent = part.slice(1, -1);
    } else if (part.length > 4 && part.startsWith("**") && part.endsWith("**")) {
      node = doc.createElement("strong");
      node.textContent = part.slice(2, -2);
    } else if (part.length > 2 && part.startsWith("*") && part.endsWith("*")) {
      node = doc.createElement("em");
      node.textContent = part.slice(1, -1);
    } else {
      node = doc.createTextNode(part);
    }
    parent.append(node);
  }
}

function list(doc, lines, i, pattern, tag) {
  const el = doc.createElement(tag);
  while (i < lines.length && pattern.test(lines[i])) {
    const li = doc.createElement("li");
    inline(doc, li, lines[i].match(pattern)[1]);
    el.append(li);
    i += 1;
  }
  return [el, i];
}

function table(doc, lines, i) {
  const el = doc.createElement("table");
  const head = doc.createElement("thead");
  const row = doc.createElement("tr");
  for (const c of cells(lines[i])) {
    const th = doc.createElement("th");
    inline(doc, th, c);
    row.append(th);
  }
  head.append(row);
  const body = doc.createElement("tbody");
  i += 2;
  while (i < lines.length && lines[i].includes("|") && lines[i].trim()) {
    const tr = doc.createElement("tr");
    for (const c of cells(lines[i])) {
      const td = doc.createElement("td");
      inline(doc, td, c);
      tr.append(td);
    }
    body.append(tr);
    i += 1;
  }
  el.append(head, body);
  return [el, i];
}

/** A DocumentFragment showing `text` (Markdown) in `doc`. */
export function renderMarkdown(doc, text) {
  const out = doc.createDocumentFragment();
  const lines = String(text).split("\n");
  let i = 0;
  let para = [];
  const flush = () => {
    if (!para.length) return;
    const p = doc.createElement("p");
    inline(doc, p, para.join("\n"));
    out.append(p);
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = line.match(FENCE))) {
      flush();
      const pre = doc.createElement("pre");
      const code = doc.createElement("code");
      if (m[1]) code.setAttribute("data-lang", m[1]);
      const body = [];
      i += 1;
      while (i < lines.length && !FENCE.test(lines[i])) body.push(lines[i++]);
      code.textContent = body.join("\n");
      pre.append(code);
      out.append(pre);
      i += 1; // the closing fence (or the end of a reply still streaming)
    } else if ((m = line.match(HEADING))) {
      flush();
      const h = doc.createElement(`h${Math.min(m[1].length + 2, 6)}`);
      inline(doc, h, m[2]);
      out.append(h);
      i += 1;
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      flush();
      const [el, next] = BULLET.test(line)
        ? list(doc, lines, i, BULLET, "ul")
        : list(doc, lines, i, NUMBERED, "ol");
      out.append(el);
      i = next;
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])) {
      flush();
      const [el, next] = table(doc, lines, i);
      out.append(el);
      i = next;
    } else if (line.startsWith(">")) {
      flush();
      const q = doc.createElement("blockquote");
      inline(doc, q, line.replace(/^>\s?/, ""));
      out.append(q);
      i += 1;
    } else if (!line.trim()) {
      flush();
      i += 1;
    } else {
      para.push(line);
      i += 1;
    }
  }
  flush();
  return out;
}
