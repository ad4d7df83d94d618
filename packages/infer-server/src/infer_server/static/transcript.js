// The conversation as shown and the chat settings, kept in sessionStorage so
// they survive a reload or a visit to the dashboard in the same tab (and
// nowhere else: closing the tab forgets them).

const KEY = "infer.chat";

/** The saved {entries, history, settings} of this tab, or null. */
export function loadTranscript() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (saved && Array.isArray(saved.entries) && Array.isArray(saved.history)) return saved;
  } catch {
    // unreadable or storage disabled: start afresh
  }
  return null;
}

/** Saves the state; a full or disabled storage only loses the saved copy. */
export function saveTranscript(state) {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(state));
  } catch {
    // nothing else depends on the saved copy
  }
}
