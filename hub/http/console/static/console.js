// Progressive enhancement only: every page works without it.
document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll("input.pick").forEach((box) => { box.checked = all.checked; });
    });
  }
  // typing an override value picks "override" and selects the item
  document.querySelectorAll("input.override").forEach((input) => {
    input.addEventListener("input", () => {
      const id = input.name.slice("value-".length);
      const radio = document.querySelector(`input[name="choice-${id}"][value="override"]`);
      const pick = document.querySelector(`input.pick[value="${id}"]`);
      if (radio) radio.checked = true;
      if (pick) pick.checked = true;
    });
  });
});
