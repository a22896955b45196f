// Moderation on the chat page: delete and edit your own messages within
// the edit window; for admins, delete any message and mute, ban or kick its
// author. The server decides (it answers 403 past the window or to a
// non-admin); the stream's delete and edit events (handed over by app.js)
// update every open page. User text only ever through textContent.
"use strict";

(() => {
  const body = document.body;
  const list = document.getElementById("messages");
  if (!list || !body.classList.contains("chat")) return;
  const myUID = body.dataset.uid;
  const room = body.dataset.room || "chat";
  const admin = body.dataset.admin === "1";
  const windowMs = (Number(body.dataset.editWindow) || 0) * 1000;
  const base = "/r/" + room + "/";
  const deleted = new Set(); // IDs deleted while this page was open

  function itemOf(id) {
    return document.getElementById("m-" + id);
  }

  function canChange(li) {
    if (li.dataset.uid !== myUID) return false;
    const t = li.querySelector(".meta time");
    const at = t ? Date.parse(t.dateTime) : NaN;
    return !isNaN(at) && Date.now() - at < windowMs;
  }

  async function post(url, fields) {
    try {
      const r = await fetch(url, { method: "POST", body: new URLSearchParams(fields), credentials: "same-origin" });
      if (r.ok) return "";
      return (await r.text()).trim() || "the server answered " + r.status;
    } catch {
      return "the server cannot be reached";
    }
  }

  function say(li, text) {
    let p = li.querySelector(".mod-error");
    if (!p) {
      p = document.createElement("p");
      p.className = "mod-error error";
      p.setAttribute("role", "alert");
      li.append(p);
    }
    p.textContent = text;
  }

  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function closeMenu(li, focus) {
    const menu = li.querySelector(".msg-menu");
    if (!menu) return;
    menu.remove();
    const toggle = li.querySelector(".msg-actions");
    toggle.setAttribute("aria-expanded", "false");
    if (focus) toggle.focus();
  }

  function openMenu(li, toggle) {
    for (const other of list.querySelectorAll(".msg-menu")) closeMenu(other.closest("li"), false);
    const id = li.dataset.id;
    const who = (li.querySelector(".meta .user") || {}).textContent || "";
    const menu = document.createElement("div");
    menu.className = "msg-menu";
    menu.setAttribute("role", "group");
    menu.setAttribute("aria-label", "Message actions");
    const own = canChange(li);
    if (own) menu.append(button("Edit", () => startEdit(li)));
    if (own || admin) {
      menu.append(button("Delete", async () => {
        const why = await post(base + "delete", { id });
        if (why) say(li, "Not deleted: " + why + ".");
      }));
    }
    if (admin && li.dataset.uid !== myUID && who) {
      const act = (path, fields, done) => async () => {
        const why = await post(path, { user: who, ...fields });
        say(li, why ? "Not done: " + why + "." : done);
        closeMenu(li, true);
      };
      menu.append(
        button("Mute " + who + " 10 min", act("/admin/mute", { duration: "10m" }, who + " is muted for 10 minutes.")),
        button("Ban " + who + " 1 day", act("/admin/ban", { duration: "24h" }, who + " is banned for a day.")),
        button("Kick " + who, act("/admin/kick", {}, who + "'s sessions were ended.")),
      );
    }
    menu.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        closeMenu(li, true);
      }
    });
    toggle.setAttribute("aria-expanded", "true");
    toggle.after(menu);
    const first = menu.querySelector("button");
    if (first) first.focus();
  }

  function startEdit(li) {
    closeMenu(li, false);
    const text = li.querySelector(".text");
    if (!text || li.querySelector(".msg-edit")) return;
    const form = document.createElement("form");
    form.className = "msg-edit";
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.htmlFor = "edit-" + li.dataset.id;
    label.textContent = "Edit message";
    const box = document.createElement("textarea");
    box.id = "edit-" + li.dataset.id;
    box.rows = 2;
    box.value = text.textContent;
    const done = () => {
      form.remove();
      text.hidden = false;
      li.querySelector(".msg-actions").focus();
    };
    form.append(label, box, button("Cancel", done));
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Save";
    form.append(save);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const why = await post(base + "edit", { id: li.dataset.id, message: box.value });
      if (why) say(li, "Not changed: " + why + ".");
      else done();
    });
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      } else if (e.key === "Escape") {
        e.stopPropagation();
        done();
      }
    });
    text.hidden = true;
    text.after(form);
    box.focus();
  }

  function decorate(li) {
    if (!li.matches("li.msg[data-id]")) return;
    if (deleted.has(li.dataset.id)) {
      li.remove();
      return;
    }
    if (li.querySelector(".msg-actions") || (!admin && !canChange(li))) return;
    const meta = li.querySelector(".meta");
    if (!meta) return;
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "msg-actions";
    toggle.textContent = "⋯";
    toggle.setAttribute("aria-label", "Actions for this message");
    toggle.setAttribute("aria-expanded", "false");
    toggle.addEventListener("click", () => (li.querySelector(".msg-menu") ? closeMenu(li, true) : openMenu(li, toggle)));
    meta.append(" ", toggle);
  }

  // Every message item gets its controls, whoever added it (the server's
  // page, a live message, scroll-back).
  new MutationObserver((changes) => {
    for (const c of changes) for (const n of c.addedNodes) if (n.nodeType === 1) decorate(n);
  }).observe(list, { childList: true });
  for (const li of list.querySelectorAll("li.msg[data-id]")) decorate(li);

  window.ChatModeration = {
    // deleted: message d.id is gone, on every page.
    deleted(d) {
      deleted.add(d.id);
      const li = itemOf(d.id);
      if (li) li.remove();
    },
    // edited: message d.id now reads text (an element app.js made from the
    // server's HTML).
    edited(d, text) {
      const li = itemOf(d.id);
      if (!li) return;
      const old = li.querySelector(".text");
      if (old) old.replaceWith(text);
      const meta = li.querySelector(".meta");
      if (meta && !meta.querySelector(".edited")) {
        const ed = document.createElement("span");
        ed.className = "edited";
        ed.textContent = "(edited)";
        meta.querySelector(".user").after(" ", ed);
      }
      const ed = li.querySelector(".edited");
      if (ed && d.edited) ed.title = "edited " + d.edited;
    },
  };
})();
