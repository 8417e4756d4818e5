// What the explorer adds to every page, loaded in <head> after Bokeh (explorer/page.py).
// Bokeh and Panel draw widgets inside shadow roots, which page-wide CSS and ARIA
// attributes do not reach: this script visits each open shadow root as it appears.
(() => {
  if (window.censusPage) return;

  // -- Choices.js (Bokeh's MultiChoice) warns once per widget render unless the
  // caller states allowHTML; Bokeh does not. State it (false: labels are text) for
  // the duration of the render, without a page-wide side effect afterwards.
  function patchChoices() {
    const model = window.Bokeh && Bokeh.Widgets && Bokeh.Widgets.MultiChoice;
    const View = model && model.prototype.default_view;
    if (!View || View.prototype.censusPatched) return;
    const render = View.prototype.render;
    View.prototype.render = function () {
      // Choices reads `userConfig.allowHTML`; Bokeh's options object inherits this
      // non-enumerable value (deepmerge copies own keys only, so nothing else changes).
      Object.defineProperty(Object.prototype, "allowHTML", { value: false, configurable: true, writable: true });
      try {
        render.call(this);
      } finally {
        delete Object.prototype.allowHTML;
      }
      if (this.choice_el && this.choice_el.config) this.choice_el.config.allowHTML = false;
    };
    View.prototype.censusPatched = true;
  }
  patchChoices();

  // -- Sliders: noUiSlider's floating-point steps send 91.00000000000001 or
  // 89.99999999999999; the server rounds that to 91 or 90 and sends the rounded
  // value back, which lands after the next key presses and moves the handle back
  // (30 quick presses ended at 82 instead of 70). Snap to the step grid here, so
  // the value sent is the one the server keeps and nothing comes back.
  function snap(value, start, step) {
    if (typeof value !== "number" || !isFinite(value) || !(step > 0)) return value;
    const snapped = start + Math.round((value - start) / step) * step;
    return Number(snapped.toFixed(10));
  }
  function patchSliders() {
    const widgets = window.Bokeh && Bokeh.Widgets;
    if (!widgets) return;
    for (const name of ["RangeSlider", "Slider"]) {
      const View = widgets[name] && widgets[name].prototype.default_view;
      if (!View || View.prototype.censusSnapped) continue;
      const calc = View.prototype._calc_from;
      View.prototype._calc_from = function (values) {
        const result = calc.call(this, values);
        const { start, step } = this.model;
        return Array.isArray(result) ? result.map((v) => snap(v, start, step)) : snap(result, start, step);
      };
      View.prototype.censusSnapped = true;
    }
  }
  patchSliders();

  // -- Styles every shadow root gets: a visible focus ring, and no "Everyone"
  // placeholder beside chosen values in a multi-select.
  const css = `
    :focus-visible { outline: 3px solid #1a5fb4 !important; outline-offset: 2px !important; }
    .noUi-handle:focus-visible { box-shadow: 0 0 0 3px #1a5fb4 !important; }
    .choices__list--multiple:has(.choices__item) + .choices__input::placeholder { color: transparent !important; }
    .choices__inner:has(.choices__list--multiple .choices__item) .choices__input::placeholder { color: transparent !important; }
    .choices__input { color: inherit !important; background-color: transparent !important; }
    :host(.footer), :host(.footer) code, :host(.footer) a { color: inherit !important; background: none !important; }
  `;
  let sheet = null;
  try {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
  } catch (error) {
    sheet = null;
  }
  const seen = new WeakSet();

  function adopt(root) {
    if (sheet && !root.adoptedStyleSheets.includes(sheet)) {
      root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
    }
  }

  // -- ARIA: Bokeh's tabs are divs; slider handles have no name.
  function label(root) {
    for (const header of root.querySelectorAll(".bk-header")) {
      if (!header.querySelector(".bk-tab")) continue;
      header.setAttribute("role", "tablist");
      for (const tab of header.querySelectorAll(".bk-tab")) {
        const active = tab.classList.contains("bk-active");
        tab.setAttribute("role", "tab");
        tab.setAttribute("aria-selected", active ? "true" : "false");
        tab.setAttribute("tabindex", active ? "0" : "-1");
        if (!tab.censusKeys) {
          tab.censusKeys = true;
          tab.addEventListener("keydown", (event) => onTabKey(event, header));
        }
      }
    }
    // Bokeh hides inactive tab panels with aria-hidden only; their widgets stay
    // focusable. `inert` takes them out of the tab order too.
    // (Bokeh removes the attribute when the tab is shown again: undo ours then.)
    for (const child of root.children || []) {
      const hidden = child.getAttribute("aria-hidden") === "true";
      if (hidden || child.censusInert) {
        child.inert = hidden;
        child.censusInert = hidden;
      }
    }
    // Choices.js marks the chosen chips aria-selected without an option role.
    for (const chip of root.querySelectorAll(".choices__list--multiple .choices__item[aria-selected]")) {
      chip.removeAttribute("aria-selected");
    }
    // Tabulator's grid holds a focusable scroll box and the pager's buttons directly:
    // the box becomes the rows' group (its inner table a plain box) and the pager a
    // cell of a footer row.
    for (const grid of root.querySelectorAll('.tabulator[role="grid"]')) {
      const holder = grid.querySelector(":scope > .tabulator-tableholder");
      if (holder && holder.getAttribute("role") !== "rowgroup") holder.setAttribute("role", "rowgroup");
      const body = holder && holder.querySelector(":scope > .tabulator-table");
      if (body && body.getAttribute("role") !== "none") body.setAttribute("role", "none");
      const footer = grid.querySelector(":scope > .tabulator-footer");
      if (footer && footer.getAttribute("role") !== "row") footer.setAttribute("role", "row");
      const paginator = footer && footer.querySelector(".tabulator-paginator");
      if (paginator && paginator.getAttribute("role") !== "gridcell") paginator.setAttribute("role", "gridcell");
    }
    // Number boxes' spin buttons have no text: name them (the arrow keys in the box
    // do the same, so they stay out of the tab order).
    for (const button of root.querySelectorAll(".bk-spin-btn:not([aria-label])")) {
      button.setAttribute("aria-label", button.classList.contains("bk-spin-btn-up") ? "Increase" : "Decrease");
      button.setAttribute("tabindex", "-1");
    }
    const title = root.querySelector(".bk-slider-title");
    if (title) {
      const name = (title.textContent || "").split(":")[0].trim();
      const handles = root.querySelectorAll(".noUi-handle");
      handles.forEach((handle, index) => {
        const which = handles.length === 2 ? (index === 0 ? " minimum" : " maximum") : "";
        handle.setAttribute("aria-label", `${name}${which}`);
      });
    }
    // Bokeh's Checkbox writes its text in a div beside the input, not in a <label>.
    for (const box of root.querySelectorAll('input[type="checkbox"]:not([aria-label])')) {
      const text = box.parentNode && box.parentNode.querySelector(".bk-label");
      if (text) box.setAttribute("aria-label", (text.textContent || "").trim());
    }
  }

  function onTabKey(event, header) {
    const tabs = [...header.querySelectorAll(".bk-tab")];
    const index = tabs.indexOf(event.currentTarget);
    let next = null;
    if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
    else if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
    else if (event.key === "Enter" || event.key === " ") next = tabs[index];
    if (next) {
      event.preventDefault();
      next.click();
      next.focus();
    }
  }

  function visit(root) {
    adopt(root);
    label(root);
    for (const element of root.querySelectorAll("*")) {
      const shadow = element.shadowRoot;
      if (shadow && !seen.has(shadow)) {
        seen.add(shadow);
        observer.observe(shadow, { childList: true, subtree: true, attributes: true, attributeFilter: ["class", "aria-hidden"] });
      }
      if (shadow) visit(shadow);
    }
  }

  let scheduled = false;
  const observer = new MutationObserver(() => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      visit(document);
    });
  });

  function landmarks() {
    const main = document.getElementById("main");
    if (main && !main.getAttribute("role")) main.setAttribute("role", "main");
  }

  function start() {
    landmarks();
    patchChoices();
    patchSliders();
    observer.observe(document.documentElement, { childList: true, subtree: true });
    visit(document);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  // -- Back and Forward: the page is built from its URL (tab, filters, chart,
  // table, columns, sort, page), so a history step reloads that URL.
  window.addEventListener("popstate", () => window.location.reload());

  window.censusPage = { visit };
})();
