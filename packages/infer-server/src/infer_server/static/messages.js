// The list of chat messages on the page. Each message has a plain-data entry
// ({role, text, meta, data, failed, toolCalls}) that mirrors what is shown, so
// the list can be saved and shown again. Text is set as text, never as HTML; assistant
// replies are shown as Markdown built from DOM nodes (markdown.js).

import { renderMarkdown } from "./markdown.js";

const LABELS = { user: "You", assistant: "Assistant", error: "Error", tool: "Tool result" };

/** The arguments of a call as shown: indented JSON when they parse, else as sent. */
function prettyArguments(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/** Shows `calls` ([{id, function: {name, arguments}}]) in `box`, as text nodes only. */
function showToolCalls(box, calls) {
  const doc = box.ownerDocument;
  box.replaceChildren();
  for (const call of calls || []) {
    const item = doc.createElement("div");
    item.className = "tool-call";
    item.setAttribute("data-call-id", call.id || "");
    const name = doc.createElement("span");
    name.className = "tool-name";
    name.textContent = `${call.function.name}()`;
    const args = doc.createElement("pre");
    args.textContent = prettyArguments(call.function.arguments);
    item.append(name, args);
    box.append(item);
  }
}

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
    const calls = doc.createElement("div");
    calls.className = "tool-calls";
    showToolCalls(calls, entry.toolCalls);
    const meta = doc.createElement("div");
    meta.className = "meta";
    meta.textContent = entry.meta;
    Object.assign(meta.dataset, entry.data);
    item.append(label, body, calls, meta);
    follow(() => box.append(item));
    return {
      item,
      setText(value) {
        entry.text = value;
        follow(() => show(body, entry.role, value));
      },
      setToolCalls(value) {
        entry.toolCalls = value.map((c) => ({ id: c.id, type: "function", function: { ...c.function } }));
        follow(() => showToolCalls(calls, entry.toolCalls));
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
