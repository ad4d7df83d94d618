// The list of chat messages on the page. Each message has a plain-data entry
// ({role, text, meta, data, failed}) that mirrors what is shown, so the list
// can be saved and shown again. Text is set as text, never as HTML; assistant
// replies are shown as Markdown built from DOM nodes (markdown.js).

import { renderMarkdown } from "./markdown.js";

const LABELS = { user: "You", assistant: "Assistant", error: "Error" };

/** A message list in `box`; `emptyHint` shows while it is empty. */
export function messageList(box, emptyHint) {
  const entries = [];
  const doc = box.ownerDocument;

  /** Shows `text` in `body`: Markdown for assistant replies, plain text otherwise. */
  function show(body, role, text) {
    if (role === "assistant") body.replaceChildren(renderMarkdown(doc, text));
    else body.textContent = text;
  }

  const nearBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < 80;

  /** Runs `change`, then keeps the newest message in view if it was. */
  function follow(change) {
    const keep = nearBottom();
    change();
    if (keep) box.scrollTop = box.scrollHeight;
  }

  /** Adds a message (or shows a saved entry) and returns its handle. */
  function add(role, text, saved = null) {
    const entry = saved || { role, text, meta: "", data: {}, failed: false };
    entries.push(entry);
    emptyHint.hidden = true;
    const item = doc.createElement("article");
    item.className = `msg ${entry.role}`;
    if (entry.failed) item.classList.add("failed");
    const label = doc.createElement("div");
    label.className = "role";
    label.textContent = LABELS[entry.role] || entry.role;
    const body = doc.createElement("div");
    body.className = "text";
    show(body, entry.role, entry.text);
    const meta = doc.createElement("div");
    meta.className = "meta";
    meta.textContent = entry.meta;
    Object.assign(meta.dataset, entry.data);
    item.append(label, body, meta);
    follow(() => box.append(item));
    return {
      item,
      setText(value) {
        entry.text = value;
        follow(() => show(body, entry.role, value));
      },
      setMeta(value, data = {}) {
        for (const [key, val] of Object.entries(data)) entry.data[key] = String(val);
        entry.meta = value;
        follow(() => {
          meta.textContent = value;
          Object.assign(meta.dataset, entry.data);
        });
      },
      fail() {
        entry.failed = true;
        item.classList.add("failed");
      },
      remove() {
        entries.splice(entries.indexOf(entry), 1);
        item.remove();
      },
    };
  }

  function clear() {
    entries.length = 0;
    for (const item of box.querySelectorAll(".msg")) item.remove();
    emptyHint.hidden = false;
  }

  return { entries, add, clear };
}
