// The cloudai dashboard's start: the login form, who is logged in, and the page for the
// address (/, /tasks, /tasks/ID, /workers), each drawn by its own file into #main.
"use strict";

(() => {
  const { $, h, fill, page, token, whoami, pages, TOKEN_KEY } = CA;

  function start() {
    $("#login-form").addEventListener("submit", CA.logIn);
    const out = $("#logout");
    out.hidden = !token();
    out.addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
    whoami().then((me) => {
      if (!me.user) return;
      const who = $("#whoami");
      fill(who, [h("span", { class: "user" }, me.user), me.role ? h("span", { class: "role" }, me.role) : null]);
      who.title = `Logged in as ${me.user}${me.role ? `, role ${me.role}` : ""}`;
      who.hidden = false;
    }, () => { /* a 401 opens the login; anything else shows on the page */ });
    const path = location.pathname.replace(/\/+$/, "") || "/";
    const m = path.match(/^\/tasks\/([^/]+)$/);
    if (path === "/") pages.overview();
    else if (path === "/tasks") pages.tasks();
    else if (m) pages.task(decodeURIComponent(m[1]));
    else if (path === "/workers") pages.workers();
    else page("Not found", "", h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Back to the overview")));
  }

  start();
})();
