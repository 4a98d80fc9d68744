// governor console: follows the server's event stream on pages that have
// one (data-stream). Parts that change every second are patched in place
// by id, so the keyboard focus stays where it is; when the layout changes
// (a group starts or ends, a job finishes) the region is replaced whole.
"use strict";
for (const region of document.querySelectorAll("[data-stream]")) {
  const source = new EventSource(region.dataset.stream);
  source.onmessage = (message) => {
    const update = JSON.parse(message.data);
    if (update.layout !== region.dataset.layout) {
      region.innerHTML = update.body;
      region.dataset.layout = update.layout;
    } else {
      const html = new Set(update.html);
      for (const [id, value] of Object.entries(update.parts)) {
        const element = document.getElementById(id);
        if (!element) continue;
        if (html.has(id)) element.innerHTML = value;
        else element.textContent = value;
      }
    }
    region.dataset.tick = update.tick;
    if (update.final) source.close();
  };
}
