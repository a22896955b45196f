// Theme: light or dark follows the system unless the header's toggle
// pinned one (remembered in localStorage). Loaded in <head> without defer,
// so the pinned theme applies before the first paint.
(function () {
  "use strict";
  const root = document.documentElement;
  const saved = (() => { try { return localStorage.getItem("theme"); } catch { return null; } })();
  if (saved === "light" || saved === "dark") root.dataset.theme = saved;
  const current = () => root.dataset.theme || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme");
    if (!button) return;
    const label = () => {
      const next = current() === "dark" ? "light" : "dark";
      button.textContent = next === "dark" ? "Dark" : "Light";
      button.setAttribute("aria-label", "Switch to the " + next + " theme");
    };
    button.hidden = false;
    label();
    button.addEventListener("click", () => {
      root.dataset.theme = current() === "dark" ? "light" : "dark";
      try { localStorage.setItem("theme", root.dataset.theme); } catch { /* private mode: this page only */ }
      label();
    });
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", label);
  });
})();
