// noviqi admin pages' shared helpers, served in front of app.js and keys.js (web.rs joins
// them), so both pages build nodes and format money the same way.
"use strict";

const noviqiUi = (function () {
  // An element with attributes and text, built with the DOM API (no HTML strings).
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmtUsd(x) {
    if (x === null || x === undefined) return "–";
    if (x === 0) return "$0";
    if (x >= 100) return "$" + x.toFixed(0);
    if (x >= 1) return "$" + x.toFixed(2);
    if (x >= 0.01) return "$" + x.toFixed(3);
    return "$" + x.toPrecision(2);
  }

  return { el, fmtUsd };
})();

