// The chat page: live messages over Server-Sent Events, sending with fetch.
// User text is only ever inserted with textContent, never as HTML.
"use strict";

(() => {
  const body = document.body;
  const myUID = body.dataset.uid;
  const list = document.getElementById("messages");
  const statusEl = document.getElementById("status");
  const form = document.getElementById("send");
  const input = document.getElementById("in");
  const errorEl = document.getElementById("send-error");
  let lastId = body.dataset.lastId || "";

  // compareIds orders Redis stream IDs "<ms>-<seq>".
  function compareIds(a, b) {
    const [am, as] = a.split("-").map(Number);
    const [bm, bs] = b.split("-").map(Number);
    return am - bm || as - bs;
  }

  function localTime(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function scrollToEnd() {
    list.scrollTop = list.scrollHeight;
  }

  function addMessage(m) {
    if (lastId && compareIds(m.id, lastId) <= 0) return; // already shown
    lastId = m.id;
    const stick = nearBottom() || m.uid === myUID;
    const li = document.createElement("li");
    li.className = m.uid === myUID ? "msg own" : "msg";
    li.dataset.id = m.id;
    li.dataset.uid = m.uid;
    const meta = document.createElement("span");
    meta.className = "meta";
    const time = document.createElement("time");
    time.dateTime = m.time;
    time.textContent = localTime(m.time);
    const user = document.createElement("b");
    user.className = "user";
    user.textContent = m.user;
    meta.append(time, " ", user);
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text;
    li.append(meta, text);
    list.append(li);
    if (stick) scrollToEnd();
  }

  function addNotice(text) {
    const li = document.createElement("li");
    li.className = "msg notice";
    li.textContent = text;
    list.append(li);
    scrollToEnd();
  }

  function setStatus(state, text) {
    statusEl.className = "status " + state;
    statusEl.textContent = text;
  }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = false;
  }

  function hideError() {
    errorEl.hidden = true;
    errorEl.textContent = "";
  }

  // --- receiving ---
  // Every event as the EventSource delivered it, before the page's own
  // "already shown" check: browser tests read it, so a duplicate or a
  // reorder from the server is seen, not hidden. Bounded.
  const received = [];
  window.chatReceived = received;
  function record(e) {
    received.push({ type: e.type, id: e.lastEventId, data: e.data });
    if (received.length > 5000) received.splice(0, 1000);
  }

  let source = null;
  let retryTimer = null;
  let backoff = 1000;

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    const url = "/stream" + (lastId ? "?last_event_id=" + encodeURIComponent(lastId) : "");
    source = new EventSource(url);
    source.onopen = () => {
      backoff = 1000;
      setStatus("connected", "connected");
    };
    for (const type of ["message", "status", "notice", "disconnect"]) source.addEventListener(type, record);
    source.addEventListener("message", (e) => addMessage(JSON.parse(e.data)));
    source.addEventListener("status", (e) => {
      if (JSON.parse(e.data).state === "degraded") {
        setStatus("degraded", "chat store unavailable: messages will arrive when it is back");
      } else {
        setStatus("connected", "connected");
      }
    });
    source.addEventListener("notice", (e) => addNotice(JSON.parse(e.data).text));
    source.addEventListener("disconnect", (e) => {
      if (JSON.parse(e.data).reason === "logged-out") {
        source.close(); // logged out here or in another window
        location.assign("/login");
        return;
      }
      setStatus("reconnecting", "reconnecting…");
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        recover(); // a non-200 answer: the browser will not retry by itself
      } else {
        setStatus("reconnecting", "reconnecting…");
      }
    };
  }

  // recover re-opens a stream that the browser gave up on (401, 429, 503):
  // back to the login page when the session is gone, else retry with backoff.
  function recover() {
    source.close();
    setStatus("reconnecting", "reconnecting…");
    fetch("/whoami", { cache: "no-store", credentials: "same-origin" })
      .then((r) => {
        if (r.status === 401) {
          location.assign("/login");
          return;
        }
        schedule();
      })
      .catch(schedule);
  }

  function schedule() {
    const delay = backoff * (0.75 + Math.random() / 2);
    backoff = Math.min(backoff * 2, 30000);
    retryTimer = setTimeout(connect, delay);
  }

  // --- sending ---
  let sending = false;
  // Each typed message gets an ID, kept while it is resent after an error,
  // so a message that was stored although its answer was lost is not
  // stored twice.
  let pending = { text: null, id: null };

  function newClientId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b); // works on plain http too, unlike randomUUID
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  async function send() {
    const text = input.value;
    if (!text.trim()) {
      showError("Type something before sending.");
      return;
    }
    if (sending) return;
    sending = true;
    if (pending.text !== text) pending = { text, id: newClientId() };
    try {
      const r = await fetch("/post", {
        method: "POST",
        body: new URLSearchParams({ message: text, client_id: pending.id }),
        credentials: "same-origin",
      });
      if (r.status === 204) {
        pending = { text: null, id: null };
        if (input.value === text) input.value = "";
        hideError();
      } else if (r.status === 401) {
        showError("Your session has ended: log in again (your text is kept here).");
      } else {
        const why = (await r.text()).trim();
        showError("Not sent: " + (why || "the server answered " + r.status) + ".");
      }
    } catch {
      showError("Not sent: the server cannot be reached. Your text is kept; try again.");
    } finally {
      sending = false;
      input.focus();
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });

  for (const t of list.querySelectorAll("time")) t.textContent = localTime(t.dateTime);
  scrollToEnd();
  connect();
})();
