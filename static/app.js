// The chat page: one room shown, every joined room live over one stream of
// Server-Sent Events, sending with fetch.
// User text is only ever inserted with textContent; the one HTML is a
// message's, made on the server, through one Trusted Types policy.
"use strict";

(() => {
  const DEFAULT_ROOM = "chat"; // the room of "/" (its position entry is written bare)
  const ROOM_NAME = /^[a-z0-9_-]{1,32}$/;
  const TYPING_SHOWN_MS = 6000; // how long "alice is typing…" stays without a new signal
  const TYPING_EVERY_MS = 3000; // at most one typing signal this often while typing
  const NOTICE_COALESCE_MS = 60000; // join/leave notices this close merge into one line

  const body = document.body;
  const myUID = body.dataset.uid;
  const room = body.dataset.room || DEFAULT_ROOM;
  const typingURL = body.dataset.typingUrl || "";
  const list = document.getElementById("messages");
  const statusEl = document.getElementById("status");
  const form = document.getElementById("send");
  const postURL = form.getAttribute("action") || "/post";
  const input = document.getElementById("in");
  const errorEl = document.getElementById("send-error");
  const typingEl = document.getElementById("typing");
  const onlineBtn = document.getElementById("online");
  const onlineCount = document.getElementById("online-count");
  const membersEl = document.getElementById("members");
  const sidebar = document.getElementById("sidebar");
  const roomsToggle = document.getElementById("rooms-toggle");
  const unreadTotal = document.getElementById("unread-total");
  const joinedEl = document.getElementById("joined");
  const leaveForm = document.getElementById("leave");
  const joinForm = document.getElementById("join");
  const joinName = document.getElementById("join-name");
  const joinError = document.getElementById("join-error");

  body.classList.add("js"); // the drawer is only hidden when this script can open it

  // --- positions ---
  // compareIds orders Redis stream IDs "<ms>-<seq>".
  function compareIds(a, b) {
    const [am, as] = a.split("-").map(Number);
    const [bm, bs] = b.split("-").map(Number);
    return am - bm || as - bs;
  }

  const ID = /^\d+-\d+$/;

  // parsePosition reads a composite position "<ms>-<seq>,dev=<ms>-<seq>,…"
  // (the default room's entry bare) into a Map room → ID.
  function parsePosition(s) {
    const pos = new Map();
    for (const entry of (s || "").split(",")) {
      if (!entry) continue;
      const eq = entry.indexOf("=");
      const r = eq < 0 ? DEFAULT_ROOM : entry.slice(0, eq);
      const id = eq < 0 ? entry : entry.slice(eq + 1);
      if (ID.test(id)) pos.set(r, id);
    }
    return pos;
  }

  // formatPosition writes a position as the server reads it: the default
  // room first and bare, the others sorted by name.
  function formatPosition(pos) {
    const rooms = [...pos.keys()].filter((r) => r !== DEFAULT_ROOM).sort();
    const out = rooms.map((r) => r + "=" + pos.get(r));
    if (pos.has(DEFAULT_ROOM)) out.unshift(pos.get(DEFAULT_ROOM));
    return out.join(",");
  }

  // Where each room of the stream stands: the newest message received (or
  // rendered), so a message is shown or counted once, and a fresh stream
  // after the browser gave up resumes every room where it was.
  const position = parsePosition(body.dataset.position);
  let moved = false; // position differs from the page's
  if (body.dataset.lastId && ID.test(body.dataset.lastId)) {
    const known = position.get(room);
    if (!known || compareIds(body.dataset.lastId, known) > 0) position.set(room, body.dataset.lastId);
  }

  function advance(r, id) {
    const known = position.get(r);
    if (known && compareIds(id, known) <= 0) return false; // already had it
    position.set(r, id);
    moved = true;
    return true;
  }

  // --- the message list ---
  // The formatters are made once: Date's toLocale*String with options
  // builds a new one on every call (about 1 ms each for a full date), which
  // cost a page of 50 messages most of its start-up time.
  const clockFormat = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
  const fullFormat = new Intl.DateTimeFormat([], { dateStyle: "full", timeStyle: "medium" });
  const dayFormat = new Intl.DateTimeFormat([], { dateStyle: "full" });

  function localTime(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "" : clockFormat.format(d);
  }

  // fullTime is a message's date and time in full, for its title.
  function fullTime(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "" : fullFormat.format(d);
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function scrollToEnd() {
    list.scrollTop = list.scrollHeight;
  }

  // --- a message's text: the server's HTML, the page's only HTML ---
  // The one Trusted Types policy ("trusted-types chat" in the CSP) passes
  // nothing but the html field of message events, rendered and sanitised on
  // the server (internal/markup); everything else on the page is
  // textContent. A message without html (an older server) shows its text.
  const chatPolicy = window.trustedTypes
    ? trustedTypes.createPolicy("chat", { createHTML: (s) => s })
    : { createHTML: (s) => s };

  function messageText(m) {
    const text = document.createElement("div");
    text.className = "text";
    text.dir = "auto";
    if (typeof m.html === "string" && m.html) text.innerHTML = chatPolicy.createHTML(m.html);
    else text.textContent = m.text;
    return text;
  }

  // collapseLong gives a message whose text is taller than the collapsed
  // height (style.css: .collapsing .text) a "Show more" button that
  // expands it ("Show less" folds it again). The text is collapsed by CSS
  // from the start, so adding the button (laid over its bottom edge)
  // changes no height: scroll-back keeps its view. Every message added to
  // the list, however, goes through here (a MutationObserver).
  function collapseLong(li) {
    const text = li.querySelector(":scope > .text");
    if (!text || li.querySelector(":scope > .more") || text.scrollHeight <= text.clientHeight + 1) return;
    text.id = text.id || "t-" + li.id;
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.textContent = "Show more";
    more.setAttribute("aria-expanded", "false");
    more.setAttribute("aria-controls", text.id);
    more.addEventListener("click", () => {
      const open = li.classList.toggle("open");
      more.textContent = open ? "Show less" : "Show more";
      more.setAttribute("aria-expanded", String(open));
    });
    li.append(more);
  }
  list.classList.add("collapsing");
  new MutationObserver((records) => {
    for (const r of records) {
      for (const n of r.addedNodes) if (n.nodeType === 1 && n.classList.contains("msg")) collapseLong(n);
    }
  }).observe(list, { childList: true });
  // The rendered messages are looked at once the page is set up (at the
  // end, with the first scroll to the newest): measuring them here would
  // lay the page out before the script has changed it, and again after.

  function addMessage(m) {
    const stick = nearBottom() || m.uid === myUID;
    const li = messageItem(m);
    list.append(li);
    arrange([li]);
    if (stick) scrollToEnd();
    noteArrival(m, li, stick);
  }

  function addNotice(text) {
    const li = document.createElement("li");
    li.className = "msg notice";
    li.textContent = text;
    const stick = nearBottom(); // never pulled down while reading above
    list.append(li);
    if (stick) scrollToEnd();
  }

  // names lists people for a sentence: "alice", "alice and bob",
  // "alice, bob and carol", "alice, bob and 3 others".
  function names(people) {
    if (people.length <= 3) {
      return people.length <= 1 ? people.join("") : people.slice(0, -1).join(", ") + " and " + people[people.length - 1];
    }
    return people.slice(0, 2).join(", ") + " and " + (people.length - 2) + " others";
  }

  // Join and leave notices in a row merge into one line ("alice and bob
  // joined, carol left"); each person counts once, with what they did last.
  let presenceLine = null; // { li, at, people: Map uid → {user, kind} }

  function presenceNotice(kind, user, uid) {
    const now = Date.now();
    const stick = nearBottom(); // never pulled down while reading above
    if (!presenceLine || list.lastElementChild !== presenceLine.li || now - presenceLine.at > NOTICE_COALESCE_MS) {
      // Its own class, neither "msg" nor "notice": it is not a message,
      // and not one of the stream's notices.
      const li = document.createElement("li");
      li.className = "presence";
      list.append(li);
      presenceLine = { li, at: now, people: new Map() };
    }
    presenceLine.at = now;
    presenceLine.people.delete(uid); // re-insert: order of the latest change
    presenceLine.people.set(uid, { user, kind });
    const joined = [], left = [];
    for (const p of presenceLine.people.values()) (p.kind === "join" ? joined : left).push(p.user);
    const parts = [];
    if (joined.length) parts.push(names(joined) + " joined");
    if (left.length) parts.push(names(left) + " left");
    presenceLine.li.textContent = parts.join(", ");
    if (stick) scrollToEnd();
  }

  // --- who is online, per room ---
  const online = new Map(); // room → Map uid → name

  function roomMembers(r) {
    let m = online.get(r);
    if (!m) online.set(r, (m = new Map()));
    return m;
  }

  function renderMembers() {
    const m = online.get(room);
    onlineCount.textContent = m ? String(m.size) : "?";
    const people = m ? [...m].sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0])) : [];
    const items = people.map(([uid, name]) => {
      const li = document.createElement("li");
      li.dataset.uid = uid;
      li.className = "user c" + senderColour(uid);
      li.dir = "auto";
      li.textContent = name;
      if (uid === myUID) {
        li.classList.add("me");
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = " (you)";
        li.append(you);
      }
      return li;
    });
    membersEl.replaceChildren(...items);
  }

  function setPresence(d) {
    const m = new Map();
    for (const u of d.users || []) m.set(u.uid, u.user);
    online.set(d.room, m);
    if (d.room === room) renderMembers();
  }

  function memberChange(kind, d) {
    const m = roomMembers(d.room);
    if (kind === "join") m.set(d.uid, d.user);
    else m.delete(d.uid);
    if (d.room !== room) return;
    renderMembers();
    if (d.uid !== myUID) presenceNotice(kind, d.user, d.uid);
    if (kind === "leave") stopTyping(d.uid);
  }

  onlineBtn.addEventListener("click", () => {
    const open = membersEl.hidden;
    membersEl.hidden = !open;
    onlineBtn.setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("click", (e) => {
    if (!membersEl.hidden && !onlineBtn.contains(e.target) && !membersEl.contains(e.target)) {
      membersEl.hidden = true;
      onlineBtn.setAttribute("aria-expanded", "false");
    }
  });

  // --- who is typing (the current room only; never yourself) ---
  const typing = new Map(); // uid → { user, timer }

  function renderTyping() {
    const people = [...typing.values()].map((t) => t.user);
    if (people.length === 0) typingEl.textContent = "";
    else if (people.length === 1) typingEl.textContent = people[0] + " is typing…";
    else if (people.length === 2) typingEl.textContent = people[0] + " and " + people[1] + " are typing…";
    else typingEl.textContent = people.length + " people are typing…";
  }

  function startTyping(uid, user) {
    const t = typing.get(uid);
    if (t) clearTimeout(t.timer);
    typing.set(uid, { user, timer: setTimeout(() => stopTyping(uid), TYPING_SHOWN_MS) });
    renderTyping();
  }

  function stopTyping(uid) {
    const t = typing.get(uid);
    if (!t) return;
    clearTimeout(t.timer);
    typing.delete(uid);
    renderTyping();
  }

  // --- unread counts of the other joined rooms ---
  // Kept in sessionStorage, so they survive moving between rooms in this
  // tab; opening a room clears its count.
  const UNREAD_KEY = "chat.unread";

  function loadUnread() {
    try {
      const o = JSON.parse(sessionStorage.getItem(UNREAD_KEY) || "{}");
      return new Map(Object.entries(o).filter(([, n]) => Number.isInteger(n) && n > 0));
    } catch {
      return new Map();
    }
  }

  const unread = loadUnread();
  unread.delete(room); // open, so read
  for (const r of [...unread.keys()]) {
    if (![...joinedEl.children].some((li) => li.dataset.room === r)) unread.delete(r); // left since
  }

  function saveUnread() {
    try {
      sessionStorage.setItem(UNREAD_KEY, JSON.stringify(Object.fromEntries(unread)));
    } catch {
      // storage full or disabled: counts live as long as the page
    }
  }

  function roomPath(r) {
    return r === DEFAULT_ROOM ? "/" : "/r/" + r;
  }

  // sidebarEntry returns the joined-room item of r, adding one for a room
  // joined since the page was rendered (in another tab).
  function sidebarEntry(r) {
    for (const li of joinedEl.children) if (li.dataset.room === r) return li;
    const li = document.createElement("li");
    li.dataset.room = r;
    const a = document.createElement("a");
    a.href = roomPath(r);
    a.textContent = "#" + r;
    const badge = document.createElement("span");
    badge.className = "unread";
    badge.hidden = true;
    li.append(a, badge);
    joinedEl.append(li);
    return li;
  }

  function renderUnread() {
    let total = 0;
    for (const li of joinedEl.children) {
      const badge = li.querySelector(".unread");
      if (!badge) continue;
      const n = li.dataset.room === room ? 0 : unread.get(li.dataset.room) || 0;
      badge.textContent = n ? String(n) : "";
      badge.title = n ? n + " unread" : "";
      badge.hidden = n === 0;
      total += n;
    }
    unreadTotal.textContent = total ? String(total) : "";
    unreadTotal.hidden = total === 0;
    renderTitle(total);
  }

  function countUnread(r) {
    sidebarEntry(r);
    unread.set(r, (unread.get(r) || 0) + 1);
    saveUnread();
    renderUnread();
  }

  // --- status and errors ---
  // On a phone the header shows a short word for the state (data-short,
  // drawn by the style sheet); the full sentence stays the status's text,
  // read out and in its title.
  const STATUS_SHORT = { connected: "", connecting: "connecting", reconnecting: "retrying", degraded: "degraded", offline: "not live", refused: "refused" };

  function setStatus(state, text) {
    statusEl.className = "status " + state;
    statusEl.textContent = text;
    statusEl.title = text;
    statusEl.dataset.short = STATUS_SHORT[state] ?? state;
  }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = false;
  }

  function hideError() {
    errorEl.hidden = true;
    errorEl.textContent = "";
  }

  // --- looks: sender colours, groups of messages, day separators ---
  const SENDER_COLOURS = 10; // --c0 … --c9 in style.css; senderColour in handlers.go hashes the same way
  const GROUP_MS = 5 * 60 * 1000; // a message this close after the same sender's continues their group

  // senderColour is FNV-1a (32 bits) of the uid's UTF-8, modulo the palette.
  function senderColour(uid) {
    let h = 0x811c9dc5;
    for (const b of new TextEncoder().encode(uid || "")) h = Math.imul(h ^ b, 0x01000193) >>> 0;
    return h % SENDER_COLOURS;
  }

  function sentAt(li) {
    const t = li.querySelector("time");
    const d = t ? new Date(t.dateTime) : new Date(NaN);
    return isNaN(d) ? null : d;
  }

  // localDay names a date's day in the reader's time zone, "2026-11-30".
  function localDay(d) {
    return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0");
  }

  function dayLabel(day) {
    const [y, m, d] = day.split("-").map(Number);
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (day === localDay(today)) return "Today";
    if (day === localDay(yesterday)) return "Yesterday";
    return dayFormat.format(new Date(y, m - 1, d));
  }

  function isMessage(el) {
    return !!el && el.matches("li.msg[data-id]");
  }

  // nextMessage returns el, or the message after the day separators at el.
  function nextMessage(el) {
    while (el && el.matches("li.day")) el = el.nextElementSibling;
    return el;
  }

  // arrange (re)decides, for each message item given (in list order), the
  // day separator before it and whether it continues the group of the item
  // before it: the same sender, within GROUP_MS, on the same local day,
  // with nothing else (a notice, a join or leave line) between them.
  function arrange(items) {
    let added = false;
    for (const li of items) {
      if (!isMessage(li)) continue;
      let prev = li.previousElementSibling;
      while (prev && prev.matches("li.day")) {
        const before = prev.previousElementSibling;
        prev.remove(); // put back below if the day still changes here
        prev = before;
      }
      const at = sentAt(li);
      let earlier = prev; // the message before, past any other line
      while (earlier && !isMessage(earlier)) earlier = earlier.previousElementSibling;
      const earlierAt = earlier ? sentAt(earlier) : null;
      const day = at ? localDay(at) : "";
      if (day && (!earlierAt || localDay(earlierAt) !== day)) {
        const sep = document.createElement("li");
        sep.className = "day";
        sep.dataset.day = day;
        li.before(sep);
        added = true;
      }
      const cont = isMessage(prev) && prev === earlier && prev.dataset.uid === li.dataset.uid && at && earlierAt &&
        at - earlierAt >= 0 && at - earlierAt <= GROUP_MS && localDay(earlierAt) === day;
      li.classList.toggle("cont", !!cont);
    }
    // "Today" becomes "Yesterday" on a page left open overnight.
    if (added) for (const sep of list.querySelectorAll("li.day")) sep.textContent = dayLabel(sep.dataset.day);
  }

  // --- a session that ended (the server restarted with another secret,
  // or the login expired): the typed text is kept in sessionStorage for
  // this room, and the room's page puts it back after logging in again.
  const DRAFT_KEY = "chat.draft." + room;
  let sessionGone = false;

  function sessionEnded() {
    if (sessionGone) return;
    sessionGone = true;
    clearTimeout(retryTimer);
    if (source) source.close();
    const texts = outbox.splice(0).map((m) => m.text);
    if (input.value) texts.push(input.value);
    renderSending();
    try {
      const saved = sessionStorage.getItem(DRAFT_KEY) || ""; // another tab's, kept too
      const draft = texts.join("\n");
      const all = saved && !saved.includes(draft) ? saved + "\n" + draft : draft || saved;
      if (all) sessionStorage.setItem(DRAFT_KEY, all);
    } catch {
      // storage disabled: the text is lost with the page
    }
    showError("Your session has ended: log in again; your text is kept.");
    setStatus("offline", "session ended");
    setTimeout(() => location.assign("/login?next=" + encodeURIComponent(roomPath(room))), SESSION_NOTICE_MS);
  }
  const SESSION_NOTICE_MS = 1500; // how long the page says so before the login page

  function restoreDraft() {
    if (body.dataset.before) return; // a history view has no message box in use
    let draft = "";
    try {
      draft = sessionStorage.getItem(DRAFT_KEY) || "";
      sessionStorage.removeItem(DRAFT_KEY);
    } catch {
      return;
    }
    if (!draft) return;
    input.value = input.value && input.value !== draft ? draft + "\n" + input.value : draft;
  }

  // notSent words a refused send once: the server's sentence as it is when
  // it says so itself ("message not sent: …"), else after "Not sent: ".
  function notSent(said) {
    const s = said.replace(/\.$/, "");
    const text = /^message not (sent|confirmed)\b/i.test(s) ? s : "Not sent: " + s;
    return text.charAt(0).toUpperCase() + text.slice(1) + ".";
  }

  // --- receiving ---
  // Every event as the EventSource delivered it, before the page's own
  // "already shown" check: browser tests read it, so a duplicate or a
  // reorder from the server is seen, not hidden. Bounded.
  const received = [];
  window.chatReceived = received;
  function record(e) {
    let r = "";
    try {
      r = JSON.parse(e.data).room || "";
    } catch {
      // recorded as it came
    }
    received.push({ type: e.type, id: e.lastEventId, data: e.data, room: r });
    if (received.length > 5000) received.splice(0, 1000);
  }

  function onMessage(e) {
    const m = JSON.parse(e.data);
    const r = m.room || DEFAULT_ROOM;
    if (!ID.test(m.id) || !advance(r, m.id)) return; // already shown or counted
    if (r !== room) {
      countUnread(r);
      return;
    }
    stopTyping(m.uid);
    addMessage(m);
  }

  function onNotice(e) {
    const n = JSON.parse(e.data);
    if (!n.room || n.room === room) addNotice(n.text);
    else addNotice("#" + n.room + ": " + n.text);
  }

  function onTyping(e) {
    const d = JSON.parse(e.data);
    if (d.room !== room || d.uid === myUID) return;
    startTyping(d.uid, d.user);
  }

  let source = null;
  let retryTimer = null;
  let backoff = 1000;

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    // The first connection starts exactly where the page was rendered;
    // later ones (after the browser gave up) where each room got to.
    const from = moved || !body.dataset.position ? formatPosition(position) : body.dataset.position;
    // One stream shared by the tabs of this browser (tabs.js), else its own.
    const Stream = window.ChatStream || EventSource;
    source = new Stream("/stream" + (from ? "?last_event_id=" + encodeURIComponent(from) : ""));
    source.onopen = () => {
      backoff = 1000;
      setStatus("connected", "connected");
    };
    const types = ["message", "presence", "join", "leave", "typing", "status", "notice", "disconnect", "delete", "edit"];
    for (const type of types) source.addEventListener(type, record);
    // Moderation (moderation.js): a message deleted or edited; an edit's
    // text is made here, by the one policy, from the server's HTML.
    source.addEventListener("delete", (e) => {
      const d = JSON.parse(e.data);
      if (window.ChatModeration && d.room === room) window.ChatModeration.deleted(d);
    });
    source.addEventListener("edit", (e) => {
      const d = JSON.parse(e.data);
      if (window.ChatModeration && d.room === room) window.ChatModeration.edited(d, messageText(d));
    });
    source.addEventListener("message", onMessage);
    source.addEventListener("presence", (e) => setPresence(JSON.parse(e.data)));
    source.addEventListener("join", (e) => memberChange("join", JSON.parse(e.data)));
    source.addEventListener("leave", (e) => memberChange("leave", JSON.parse(e.data)));
    source.addEventListener("typing", onTyping);
    source.addEventListener("status", (e) => {
      if (JSON.parse(e.data).state === "degraded") {
        setStatus("degraded", "chat store unavailable: messages will arrive when it is back");
      } else {
        setStatus("connected", "connected");
      }
    });
    source.addEventListener("notice", onNotice);
    source.addEventListener("disconnect", (e) => {
      const reason = JSON.parse(e.data).reason;
      if (reason === "banned" || reason === "kicked") {
        source.close(); // ended by a moderator: say so, and do not reconnect
        clearTimeout(retryTimer);
        setStatus("refused", reason === "banned" ? "Disconnected: you have been banned from this chat." : "Disconnected: a moderator ended your session. Reload to log in again.");
        return;
      }
      if (reason === "logged-out") {
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
  // back to the login page when the session is gone, else retry with
  // backoff. The EventSource does not show why it was refused, so the
  // stream is asked once more with fetch, and the server's sentence shown.
  function recover() {
    source.close();
    setStatus("reconnecting", "reconnecting…");
    const ask = new AbortController();
    fetch("/stream", { cache: "no-store", credentials: "same-origin", signal: ask.signal })
      .then(async (r) => {
        if (r.status === 401) {
          sessionEnded();
          return;
        }
        if (r.ok) {
          ask.abort(); // open now: only the answer was wanted
        } else if (r.status === 403) {
          // Banned: show why, and stop asking.
          setStatus("refused", "Not connected: " + ((await r.text()).trim() || "refused") + ".");
          return;
        } else {
          const why = (await r.text()).trim();
          const said = why || "the server answered " + r.status;
          setStatus("refused", "Not connected: " + said + (/retry/i.test(said) ? "" : " (retrying)"));
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
  // Enter moves the text to the outbox, which is sent one message at a
  // time, in order; Enter while a send is on its way queues behind it. A
  // send that gets no answer within SEND_TIMEOUT_MS is given up, and the
  // failed text (with what was queued behind it) goes back into the box.
  const SEND_TIMEOUT_MS = 10000;
  const sendState = document.getElementById("send-state");
  const outbox = []; // { text, id }, the first being sent
  let sending = false;
  let lastTypingSignal = 0; // when the last typing signal was sent (ms)
  // Each typed message gets an ID, kept while it is resent after an error,
  // so a message that was stored although its answer was lost is not
  // stored twice.
  let pending = { text: null, id: null };

  function newClientId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b); // works on plain http too, unlike randomUUID
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function renderSending() {
    if (!sendState) return;
    sendState.textContent = outbox.length > 1 ? "sending " + outbox.length + " messages…" : "sending…";
    sendState.hidden = outbox.length === 0;
  }

  function send() {
    const text = input.value;
    if (!text.trim()) {
      showError("Type something before sending.");
      return;
    }
    outbox.push({ text, id: pending.text === text ? pending.id : newClientId() });
    pending = { text: null, id: null };
    input.value = "";
    renderSending();
    if (!sending) drain();
  }

  // giveBack puts the unsent texts back into the box, before what was
  // typed since, and keeps the failed one's ID for its retry.
  function giveBack(failed) {
    const texts = outbox.splice(0).map((m) => m.text);
    if (input.value) texts.push(input.value);
    input.value = texts.join("\n");
    pending = texts.length === 1 ? { text: texts[0], id: failed.id } : { text: null, id: null };
  }

  async function drain() {
    sending = true;
    while (outbox.length) {
      const m = outbox[0];
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), SEND_TIMEOUT_MS);
      let why = "";
      try {
        const r = await fetch(postURL, {
          method: "POST",
          body: new URLSearchParams({ message: m.text, client_id: m.id }),
          credentials: "same-origin",
          signal: abort.signal,
        });
        if (r.status === 401) {
          giveBack(m);
          sessionEnded();
          break;
        } else if (r.status !== 204) {
          const said = (await r.text()).trim();
          why = notSent(said || "the server answered " + r.status);
        }
      } catch {
        why = abort.signal.aborted
          ? "Not sent: no answer from the server within " + SEND_TIMEOUT_MS / 1000 + " s. Your text is kept; try again."
          : "Not sent: the server cannot be reached. Your text is kept; try again.";
      } finally {
        clearTimeout(timer);
      }
      if (why) {
        giveBack(m);
        showError(why);
        break;
      }
      outbox.shift();
      hideError();
      renderSending();
    }
    sending = false;
    renderSending();
    input.focus();
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

  // Typing signals: at most one every TYPING_EVERY_MS while there is text
  // being typed (a keystroke starts one; none is sent later on a timer, so
  // none follows a sent message), none while a message is on its way. The
  // spacing holds across messages too, which keeps one tab below the
  // server's limit; a refused signal (429: several tabs) is dropped.
  input.addEventListener("input", () => {
    if (!typingURL || sending || !input.value.trim()) return;
    const now = Date.now();
    if (now - lastTypingSignal < TYPING_EVERY_MS) return;
    lastTypingSignal = now;
    fetch(typingURL, { method: "POST", body: new URLSearchParams(), credentials: "same-origin" }).catch(() => {});
  });

  // --- rooms: leave, join, the drawer ---
  leaveForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = leaveForm.querySelector("button");
    button.disabled = true;
    try {
      const r = await fetch(leaveForm.getAttribute("action"), {
        method: "POST",
        body: new URLSearchParams(),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (r.ok) {
        unread.delete(room);
        saveUnread();
        // On to another room of yours (the default room's page would join
        // it again), else the default room.
        const other = [...document.querySelectorAll("#joined li")].map((li) => li.dataset.room).find((r) => r !== room);
        location.assign(other && other !== "chat" ? "/r/" + other : "/");
        return;
      }
      showError("Could not leave #" + room + ": " + ((await r.text()).trim() || "the server answered " + r.status) + ".");
    } catch {
      showError("Could not leave #" + room + ": the server cannot be reached.");
    }
    button.disabled = false;
  });

  joinForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const name = joinName.value.trim().replace(/^#/, "").toLowerCase();
    if (!ROOM_NAME.test(name)) {
      joinError.textContent = "A room name is 1 to 32 letters a–z, digits, - or _.";
      joinError.hidden = false;
      return;
    }
    joinError.hidden = true;
    location.assign(roomPath(name));
  });
  joinName.addEventListener("input", () => {
    joinError.hidden = true;
  });

  function setDrawer(open) {
    body.classList.toggle("drawer-open", open);
    roomsToggle.setAttribute("aria-expanded", String(open));
  }
  roomsToggle.addEventListener("click", () => setDrawer(!body.classList.contains("drawer-open")));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      setDrawer(false);
      membersEl.hidden = true;
      onlineBtn.setAttribute("aria-expanded", "false");
    }
  });
  document.addEventListener("click", (e) => {
    if (body.classList.contains("drawer-open") && !sidebar.contains(e.target) && !roomsToggle.contains(e.target)) setDrawer(false);
  });

  // A page left for another one can be kept in the back/forward cache,
  // stream and all, and would stay online: close the stream when the page
  // is hidden for good, and open it again (from where each room got to) if
  // the page is shown again.
  addEventListener("pagehide", () => {
    clearTimeout(retryTimer);
    if (source) source.close();
    for (const uid of [...typing.keys()]) stopTyping(uid);
  });
  addEventListener("pageshow", (e) => {
    if (e.persisted) connect();
  });

  // --- scroll-back: older pages of the history (this section only) ---
  // Scrolling to the top of the list (or following the "older messages"
  // link) loads the page before the oldest message shown from
  // /r/{room}/history and prepends it, keeping what was in view where it
  // was; at the oldest kept message a "beginning of the history" line.
  const historyURL = body.dataset.historyUrl || "";
  let olderLink = document.getElementById("older");
  let loadingOlder = false;
  let historyDone = !olderLink; // the server renders no link at the oldest

  function oldestShown() {
    const first = list.querySelector("li.msg[data-id]");
    return first ? first.dataset.id : "";
  }

  function markHistoryStart() {
    if (list.querySelector("li.history-start")) return;
    const li = document.createElement("li");
    li.className = "history-start";
    li.textContent = "beginning of the history";
    list.prepend(li);
  }

  async function loadOlder() {
    if (loadingOlder || historyDone || !historyURL) return;
    const before = oldestShown();
    if (!ID.test(before)) return;
    loadingOlder = true;
    try {
      const r = await fetch(historyURL + "?before=" + encodeURIComponent(before) + "&limit=50", {
        cache: "no-store",
        credentials: "same-origin",
      });
      if (!r.ok) return; // tried again on the next scroll to the top
      const page = await r.json();
      const shown = new Set([...list.querySelectorAll("li.msg[data-id]")].map((li) => li.dataset.id));
      const items = [];
      for (const m of page.messages || []) {
        if (!ID.test(m.id) || shown.has(m.id)) continue;
        shown.add(m.id);
        const li = messageItem(m);
        li.id = "m-" + m.id;
        items.push(li);
      }
      // Keep the view still: whatever grows above moves the scroll by as much.
      const height = list.scrollHeight;
      const top = list.scrollTop;
      const anchor = olderLink ? olderLink.closest("li") : null;
      if (anchor) anchor.after(...items);
      else list.prepend(...items);
      // Regroup the loaded page and the message that was first before it
      // (which can shrink, continuing a group now: its top is kept still).
      const next = items.length ? nextMessage(items[items.length - 1].nextElementSibling) : null;
      list.scrollTop = top + (list.scrollHeight - height);
      if (next) {
        const shift = next.getBoundingClientRect().top;
        arrange([...items, next]);
        list.scrollTop += next.getBoundingClientRect().top - shift;
      } else {
        arrange(items);
      }
      if (!page.more) {
        historyDone = true;
        if (anchor) anchor.remove();
        olderLink = null;
        markHistoryStart();
      } else if (olderLink) {
        olderLink.href = olderLink.pathname + "?before=" + encodeURIComponent(page.before);
      }
    } catch {
      // offline: tried again on the next scroll to the top
    } finally {
      loadingOlder = false;
    }
  }

  // messageItem builds a message's list item (live, or loaded by
  // scroll-back), its text as the server rendered it.
  function messageItem(m) {
    const li = document.createElement("li");
    li.className = m.uid === myUID ? "msg own" : "msg";
    li.id = "m-" + m.id;
    li.dataset.id = m.id;
    li.dataset.uid = m.uid;
    const meta = document.createElement("span");
    meta.className = "meta";
    const time = document.createElement("time");
    time.dateTime = m.time;
    time.textContent = localTime(m.time);
    time.title = fullTime(m.time);
    const user = document.createElement("b");
    user.className = "user c" + senderColour(m.uid);
    user.dir = "auto";
    user.textContent = m.user;
    meta.append(time, " ", user);
    if (m.edited) {
      const ed = document.createElement("span");
      ed.className = "edited";
      ed.title = "edited " + m.edited;
      ed.textContent = "(edited)";
      meta.append(" ", ed);
    }
    li.append(meta, messageText(m));
    markMention(li);
    return li;
  }

  list.addEventListener("scroll", () => {
    if (list.scrollTop < 40) loadOlder();
  });
  if (olderLink) {
    olderLink.addEventListener("click", (e) => {
      e.preventDefault();
      loadOlder();
    });
  } else if (oldestShown()) {
    markHistoryStart();
  }
  if (body.dataset.before) setStatus("offline", "older messages: not live");
  // --- end of scroll-back ---

  // --- what is new: the new-messages line, jump to newest, unread while
  // hidden (title, favicon), mentions, notifications, announcements ---
  const jumpBtn = document.getElementById("jump");
  const announceEl = document.getElementById("announce");
  const notifyBtn = document.getElementById("notify");
  const notifyHint = document.getElementById("notify-hint");
  const favicon = document.querySelector('link[rel~="icon"]');
  const FAVICON = favicon ? favicon.getAttribute("href") : "";
  const FAVICON_UNREAD = "/static/favicon-unread.svg";
  const ANNOUNCE_KEEP = 5; // announcements kept in the live region
  const NOTIFY_KEY = "chat.notify"; // "on" once the user asked for mention notifications
  const NOTIFY_BODY_MAX = 140; // characters of a message shown in a notification

  let newLine = null; // the "New messages" item, once placed
  let newLineSeen = false; // the user has been at the bottom, tab visible, since it was placed
  let newBelow = 0; // messages arrived while scrolled up, since last at the bottom
  let hiddenCount = 0; // messages of this room arrived while the tab was hidden

  function isHidden() {
    return document.visibilityState === "hidden";
  }

  // An @mention of me: "@" + my name (any case), not inside a word on
  // either side ("hi @Alice," yes; "@alicex", "bob@alice.com" no).
  const WORD = "\\p{L}\\p{M}\\p{N}_";
  const myName = body.dataset.user || "";
  const mentionRE = myName
    ? new RegExp(
        "(?:^|[^" + WORD + "])@" + myName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/ /g, "\\s+") + "(?![" + WORD + "])",
        "iu",
      )
    : null;

  // plainText is an element's text as read: a line break for <br> and
  // around blocks (textContent would join "a<br>@alice" into "a@alice").
  const BLOCKS = new Set(["P", "PRE", "BLOCKQUOTE", "UL", "OL", "LI", "DIV"]);
  function plainText(node) {
    let s = "";
    for (const n of node.childNodes) {
      if (n.nodeType === Node.TEXT_NODE) s += n.data;
      else if (n.nodeName === "BR") s += "\n";
      else if (n.nodeType === Node.ELEMENT_NODE) s += BLOCKS.has(n.nodeName) ? "\n" + plainText(n) + "\n" : plainText(n);
    }
    return s;
  }

  function messagePlainText(li) {
    const text = li.querySelector(".text");
    return text ? plainText(text).replace(/\s+/g, " ").trim() : "";
  }

  // markMention gives a message (live, rendered by the server, or loaded
  // by scroll-back) that mentions me the class "mention"; never my own.
  function markMention(li) {
    if (mentionRE && li.dataset.uid !== myUID && mentionRE.test(messagePlainText(li))) li.classList.add("mention");
  }

  // The title and the favicon count what is unread: the other rooms, and
  // this room's messages that came while the tab was hidden.
  function renderTitle(others) {
    const n = others + hiddenCount;
    document.title = (n ? "(" + n + ") " : "") + "#" + room + " · Chat";
    if (favicon) favicon.setAttribute("href", n ? FAVICON_UNREAD : FAVICON);
  }

  // The jump button shows while scrolled up, with how many came below.
  function renderJump() {
    const up = !nearBottom();
    jumpBtn.hidden = !up;
    jumpBtn.textContent = newBelow ? "Jump to newest (" + newBelow + " new)" : "Jump to newest";
  }

  // seenToBottom: the user is at the bottom of a visible tab, so has seen
  // everything, the new-messages line included.
  function seenToBottom() {
    if (isHidden() || !nearBottom()) return;
    newBelow = 0;
    if (newLine) newLineSeen = true;
  }

  // placeNewLine puts the "New messages" line just before li, keeping
  // what is in view still (the line may leave from above it).
  function placeNewLine(li) {
    if (!newLine) {
      newLine = document.createElement("li");
      newLine.className = "new-line";
      newLine.id = "new-line";
      const label = document.createElement("span");
      label.textContent = "New messages";
      newLine.append(label);
    }
    const top = list.getBoundingClientRect().top;
    const ref = [...list.children].find((c) => c !== newLine && c.getBoundingClientRect().bottom > top);
    const was = ref ? ref.getBoundingClientRect().top : 0;
    li.before(newLine);
    newLineSeen = false;
    if (ref) list.scrollTop += ref.getBoundingClientRect().top - was;
  }

  function clearNewLine() {
    if (newLine) newLine.remove();
    newLine = null;
    newLineSeen = false;
    newBelow = 0;
  }

  // noteArrival is told of each live message added to this room's list.
  function noteArrival(m, li, stick) {
    if (m.uid === myUID) {
      clearNewLine(); // I wrote, so I have read up to here
      renderJump();
      return;
    }
    const text = messagePlainText(li);
    announce(m.user + ": " + text);
    const hidden = isHidden();
    if (hidden) {
      hiddenCount++;
      renderUnread();
    }
    if ((!stick || hidden) && (!newLine || newLineSeen)) {
      placeNewLine(li);
      if (stick) scrollToEnd();
    }
    if (!stick) newBelow++;
    else seenToBottom();
    renderJump();
    if (li.classList.contains("mention")) notifyMention(m, li, text);
  }

  // announce reads a new live message out politely (the list itself is not
  // a live region: history loads are not read out).
  function announce(text) {
    const p = document.createElement("p");
    p.textContent = text;
    announceEl.append(p);
    while (announceEl.childElementCount > ANNOUNCE_KEEP) announceEl.firstElementChild.remove();
  }

  list.addEventListener("scroll", () => {
    seenToBottom();
    renderJump();
  });
  jumpBtn.addEventListener("click", () => {
    scrollToEnd();
    seenToBottom();
    renderJump();
    input.focus();
  });
  document.addEventListener("visibilitychange", () => {
    if (isHidden()) return;
    hiddenCount = 0;
    renderUnread();
    seenToBottom();
    renderJump();
  });

  // Desktop notifications of mentions, if the user asks for them (the
  // permission is requested on that click only, never on load).
  const canNotify = typeof window.Notification === "function";

  function notifyWanted() {
    try {
      return localStorage.getItem(NOTIFY_KEY) === "on";
    } catch {
      return false;
    }
  }

  function renderNotify() {
    const on = notifyWanted() && Notification.permission === "granted";
    notifyBtn.setAttribute("aria-pressed", String(on));
    notifyHint.textContent = Notification.permission === "denied" ? "Notifications are blocked for this site in the browser's settings." : "";
    notifyHint.hidden = !notifyHint.textContent;
  }

  function setNotify(on) {
    try {
      localStorage.setItem(NOTIFY_KEY, on ? "on" : "off");
    } catch {
      // storage disabled: the choice lasts as long as the page
    }
    renderNotify();
  }

  if (canNotify) {
    notifyBtn.hidden = false;
    renderNotify();
    notifyBtn.addEventListener("click", async () => {
      if (notifyWanted() && Notification.permission === "granted") {
        setNotify(false);
        return;
      }
      // Asked on every click that turns them on: the browser answers at
      // once, without a prompt, when the user has decided before.
      let p;
      try {
        p = (await Notification.requestPermission()) || Notification.permission;
      } catch {
        p = Notification.permission;
      }
      setNotify(p === "granted");
    });
  }

  function notifyMention(m, li, text) {
    if (!canNotify || !notifyWanted() || Notification.permission !== "granted") return;
    if (!isHidden() && document.hasFocus()) return; // seen on the page
    const short = text.length > NOTIFY_BODY_MAX ? text.slice(0, NOTIFY_BODY_MAX - 1) + "…" : text;
    let n;
    try {
      n = new Notification(m.user + " in #" + room, { body: short, tag: m.id });
    } catch {
      return; // e.g. a browser that only notifies from a service worker
    }
    n.addEventListener("click", () => {
      window.focus();
      n.close();
      if (!li.isConnected) return;
      li.tabIndex = -1;
      li.scrollIntoView({ block: "center" });
      li.focus({ preventScroll: true });
    });
  }

  for (const li of list.querySelectorAll("li.msg[data-id]")) markMention(li);
  // --- end of what is new ---

  for (const t of document.querySelectorAll("time")) {
    t.textContent = localTime(t.dateTime);
    t.title = fullTime(t.dateTime);
  }
  arrange([...list.querySelectorAll("li.msg[data-id]")]);
  restoreDraft();
  saveUnread(); // this room's count is cleared: it is open
  renderUnread();
  // Everything that measures the laid-out page, together, before the first
  // paint (one layout, not one per step, and not holding up
  // DOMContentLoaded): long messages collapsed, the view at the newest.
  requestAnimationFrame(() => {
    for (const li of list.querySelectorAll(":scope > .msg")) collapseLong(li);
    scrollToEnd();
    renderJump();
  });
  if (!body.dataset.before) connect(); // a history view (?before=) has no live stream
})();
