// Keyboard review of suspected label errors: j/k move, 1 keeps the label, 2 takes the model's.
(() => {
  const list = document.getElementById("review");
  let current = 0;
  const set = (i) => {
    const items = list.children;
    if (!items.length) return;
    items[current]?.classList.remove("current");
    current = Math.max(0, Math.min(items.length - 1, i));
    items[current].classList.add("current");
    items[current].scrollIntoView({ block: "nearest" });
  };
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const item = list.children[current];
    if (e.key === "j") set(current + 1);
    else if (e.key === "k") set(current - 1);
    else if (e.key === "1") item?.querySelector("button.keep").click();
    else if (e.key === "2") item?.querySelector("button.take").click();
    else return;
    e.preventDefault();
  });
})();
